package engine

import (
	"bytes"
	"encoding/json"
	"strconv"

	"gopkg.in/yaml.v3"
)

// Render returns the resolved plan as an ordered YAML node: references
// expanded, used plans inlined, defaults filled, and the board when known.
// Secrets are still in it: mask the output with a redactor.
func Render(p *Plan, board *BoardSpec) *yaml.Node {
	return render(p, board, nil)
}

func render(p *Plan, board *BoardSpec, a *Assignment) *yaml.Node {
	m := mapping()
	add(m, "apiVersion", scalar(APIVersion))
	add(m, "kind", scalar("Plan"))
	add(m, "name", scalar(p.Name))
	if p.Description != "" {
		add(m, "description", scalar(p.Description))
	}
	if p.Multi() {
		renderMulti(m, p, a)
	} else if board != nil {
		b := mapping()
		add(b, "name", scalar(board.Name))
		if len(board.Labels) > 0 {
			add(b, "labels", encode(board.Labels))
		}
		d := mapping()
		for _, c := range board.Capabilities() {
			add(d, string(c), scalar(board.Serve[c]))
		}
		add(b, "drivers", d)
		add(m, "board", b)
	} else if !p.Board.IsZero() {
		add(m, "board", encode(p.Board))
	}
	if len(p.Params) > 0 {
		ps := mapping()
		for _, prm := range p.Params {
			pm := mapping()
			add(pm, "type", scalar(prm.Type))
			if prm.Secret {
				add(pm, "secret", encode(true))
			}
			if prm.HasDefault {
				add(pm, "default", scalar(prm.defaultText()))
			}
			add(ps, prm.Name, pm)
		}
		add(m, "params", ps)
	}
	if p.Timeout.IsSet() {
		add(m, "timeout", encode(p.Timeout))
	}
	if len(p.FailOn) > 0 {
		seq := &yaml.Node{Kind: yaml.SequenceNode}
		for _, f := range p.FailOn {
			seq.Content = append(seq.Content, scalar(f.Source))
		}
		add(m, "fail-on", seq)
	}
	add(m, "steps", renderSteps(p.Steps))
	if len(p.Finally) > 0 {
		add(m, "finally", renderSteps(p.Finally))
	}
	return m
}

func (p *Param) defaultText() string {
	if s, ok := p.Default.(string); ok {
		return s
	}
	return ""
}

func renderSteps(steps []*Step) *yaml.Node {
	seq := &yaml.Node{Kind: yaml.SequenceNode}
	for _, s := range steps {
		m := mapping()
		if s.Name != "" {
			add(m, "name", scalar(s.Name))
		}
		if s.ID != "" {
			add(m, "id", scalar(s.ID))
		}
		if s.Timeout.IsSet() {
			add(m, "timeout", encode(s.Timeout))
		}
		if s.Retry.Count() > 1 {
			add(m, "retry", encode(s.Retry))
		}
		if s.ContinueOnError.Value {
			add(m, "continue-on-error", encode(true))
		}
		if s.On != "" {
			add(m, "on", scalar(s.On))
		}
		if par, ok := s.Action.(Parent); ok && s.Type == "parallel" {
			add(m, s.Type, renderSteps(par.Children()[0]))
		} else if ok {
			body := mapping()
			lists := par.Children()
			add(body, "steps", renderSteps(lists[0]))
			if len(lists) > 1 && len(lists[1]) > 0 {
				add(body, "finally", renderSteps(lists[1]))
			}
			add(m, s.Type, body)
		} else {
			add(m, s.Type, encode(s.Action))
		}
		seq.Content = append(seq.Content, m)
	}
	return seq
}

func mapping() *yaml.Node { return &yaml.Node{Kind: yaml.MappingNode} }

func scalar(s string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s} }

func add(m *yaml.Node, k string, v *yaml.Node) { m.Content = append(m.Content, scalar(k), v) }

func encode(v any) *yaml.Node {
	var n yaml.Node
	if err := n.Encode(v); err != nil {
		return scalar(err.Error())
	}
	return &n
}

// YAML renders a node as YAML text.
func YAML(n *yaml.Node) []byte {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	_ = enc.Encode(n)
	_ = enc.Close()
	return buf.Bytes()
}

// JSON renders a node as indented JSON, keeping key order.
func JSON(n *yaml.Node) []byte {
	var buf bytes.Buffer
	writeJSON(&buf, n)
	var out bytes.Buffer
	if err := json.Indent(&out, buf.Bytes(), "", "  "); err != nil {
		return buf.Bytes()
	}
	out.WriteByte('\n')
	return out.Bytes()
}

func writeJSON(buf *bytes.Buffer, n *yaml.Node) {
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) > 0 {
			writeJSON(buf, n.Content[0])
		}
	case yaml.MappingNode:
		buf.WriteByte('{')
		for i := 0; i+1 < len(n.Content); i += 2 {
			if i > 0 {
				buf.WriteByte(',')
			}
			buf.WriteString(strconv.Quote(n.Content[i].Value))
			buf.WriteByte(':')
			writeJSON(buf, n.Content[i+1])
		}
		buf.WriteByte('}')
	case yaml.SequenceNode:
		buf.WriteByte('[')
		for i, c := range n.Content {
			if i > 0 {
				buf.WriteByte(',')
			}
			writeJSON(buf, c)
		}
		buf.WriteByte(']')
	default:
		v := scalarValue(n)
		b, err := json.Marshal(v)
		if err != nil {
			b, _ = json.Marshal(n.Value)
		}
		buf.Write(b)
	}
}
