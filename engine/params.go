package engine

// Parameters: their declarations, checking and normalising the values given
// for them, and binding them into a plan's scope.

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/jsplan/jsplan/engine/diag"
	"github.com/jsplan/jsplan/engine/expr"
	"github.com/jsplan/jsplan/engine/redact"
)

func (l *Loader) decodeParams(f *fileDoc, pn *yaml.Node) []*Param {
	var out []*Param
	for i := 0; i+1 < len(pn.Content); i += 2 {
		k, v := pn.Content[i], pn.Content[i+1]
		p := &Param{Name: k.Value, Type: "string", Range: rangeOf(f.path, k)}
		path := "params." + k.Value
		if v.Kind == yaml.MappingNode {
			for j := 0; j+1 < len(v.Content); j += 2 {
				fk, fv := v.Content[j], v.Content[j+1]
				switch fk.Value {
				case "type":
					p.Type = fv.Value
				case "description":
					p.Description = fv.Value
				case "required":
					p.Required = fv.Value == "true"
				case "secret":
					p.Secret = fv.Value == "true"
				case "values":
					for _, e := range fv.Content {
						p.Values = append(p.Values, e.Value)
					}
				case "default":
					p.HasDefault = true
					p.Default = fv.Value
				}
			}
		}
		if f.isBad("/params/" + k.Value) {
			out = append(out, p)
			continue
		}
		if p.Type == "enum" && len(p.Values) == 0 {
			l.report(diag.Errorf(p.Range, path, "an enum parameter needs `values`"))
		}
		if p.Type != "enum" && len(p.Values) > 0 {
			l.report(diag.Errorf(p.Range, path, "`values` is only for parameters of type enum"))
		}
		if p.Required && p.HasDefault {
			l.report(diag.Errorf(p.Range, path, "parameter %q is required and has a default", p.Name).
				WithDetail("drop `required` (the default is used when no value is given) or drop the default"))
		}
		if p.HasDefault {
			if _, dv := mapGet(v, "default"); dv != nil {
				if msg := checkValue(p, fmt.Sprint(p.Default)); msg != "" {
					l.report(diag.Errorf(rangeOf(f.path, dv), path+".default", "default: %s", msg))
				}
			}
		}
		out = append(out, p)
	}
	return out
}

// checkValue checks text against a parameter's type; it returns a problem
// or "". The value of a secret parameter is never part of the problem.
func checkValue(p *Param, text string) string { return checkValueOf(p, text, false) }

// checkValueOf is checkValue for a value that may hold a secret of another
// plan (hide: a using plan passed one under `with:`): it is not shown.
func checkValueOf(p *Param, text string, hide bool) string {
	shown := strconv.Quote(text)
	if hide && !p.Secret {
		shown = "the value (it holds a secret)"
	}
	if p.Secret {
		shown = "the secret value"
		if redact.TooShort(text) {
			return fmt.Sprintf("%s is shorter than %d characters: a secret that short cannot be masked "+
				"(it would be masked inside every word it occurs in)", shown, redact.MinLen)
		}
	}
	switch p.Type {
	case "integer":
		if _, err := strconv.ParseInt(strings.TrimSpace(text), 10, 64); err != nil {
			return shown + " is not an integer"
		}
	case "boolean":
		if _, err := strconv.ParseBool(strings.TrimSpace(text)); err != nil {
			return shown + " is not a boolean (true or false)"
		}
	case "duration":
		if _, err := ParseDuration(text); err != nil {
			return fmt.Sprintf("malformed duration %s: use a number and a unit, e.g. 30s, 5m, 1h30m", shown)
		}
	case "enum":
		for _, v := range p.Values {
			if v == text {
				return ""
			}
		}
		return fmt.Sprintf("%s is not one of: %s", shown, strings.Join(p.Values, ", "))
	}
	return ""
}

func tagFor(p *Param) string {
	switch p.Type {
	case "integer":
		return "!!int"
	case "boolean":
		return "!!bool"
	}
	return "!!str"
}

// bindParams fills the scope from values, defaults and requirements.
func (l *Loader) bindParams(f *fileDoc, p *Plan, sc *scope, values map[string]valueSrc, at *diag.Range) {
	for _, prm := range p.Params {
		sc.names = append(sc.names, prm.Name)
		v, given := values[prm.Name]
		sv := scopeValue{tag: tagFor(prm), secret: prm.Secret}
		switch {
		case given && !v.known:
			// a pending reference from the parent plan
		case given:
			if msg := checkValueOf(prm, v.text, l.holdsSecret(v.text)); msg != "" {
				l.report(diag.Errorf(v.src, "", "parameter %q: %s", prm.Name, msg))
				// declared, with no usable value: its references stay
				// pending (the error above is the only one)
				sc.values[prm.Name] = sv
				continue
			}
			sv.known, sv.text = true, normalize(prm, v.text, v.base)
		case prm.HasDefault:
			sv.known, sv.text = true, normalize(prm, fmt.Sprint(prm.Default), p.Dir)
		case prm.Required && at != nil:
			l.report(diag.Errorf(*at, "", "missing required input %q of %s", prm.Name, f.path).
				WithDetail("give it under `with:`"))
		case prm.Required && l.opts.Mode == ModeRun:
			l.report(diag.Errorf(prm.Range, "params."+prm.Name, "missing value for required parameter %q", prm.Name).
				WithDetail("pass it with --set %s=VALUE, a --params-file, or $JSPLAN_PARAM_%s", prm.Name, strings.ToUpper(strings.ReplaceAll(prm.Name, "-", "_"))))
		case !prm.Required:
			// an optional parameter without default is the empty string
			if prm.Type == "string" {
				sv.known = true
			}
		}
		if sv.known && sv.secret && sv.text != "" {
			l.secrets[sv.text] = true
		}
		sc.values[prm.Name] = sv
	}
}

// holdsSecret reports whether text is or contains a value known to be
// secret (a secret parameter of a plan loaded so far).
func (l *Loader) holdsSecret(text string) bool {
	for s := range l.secrets {
		if s != "" && strings.Contains(text, s) {
			return true
		}
	}
	return false
}

// normalize puts a checked value in canonical form; relative paths become
// absolute against base (the working directory when base is "").
func normalize(p *Param, text, base string) string {
	switch p.Type {
	case "integer", "boolean":
		return strings.TrimSpace(text)
	case "path":
		if text == "" || filepath.IsAbs(text) || expr.Has(text) {
			return text
		}
		if base == "" {
			if abs, err := filepath.Abs(text); err == nil {
				return abs
			}
			return text
		}
		return filepath.Join(base, text)
	}
	return text
}
