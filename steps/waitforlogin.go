package steps

import (
	"context"
	"fmt"
	"regexp"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/jsplan/jsplan/drivers"
	"github.com/jsplan/jsplan/engine"
	"github.com/jsplan/jsplan/engine/diag"
	"github.com/jsplan/jsplan/engine/shell"
)

// loginAction waits for the login prompt on the console and logs in.
type loginAction struct {
	Username       string           `yaml:"username"`
	Password       string           `yaml:"password,omitempty"`
	LoginPrompt    string           `yaml:"login-prompt,omitempty"`
	PasswordPrompt string           `yaml:"password-prompt,omitempty"`
	Prompt         string           `yaml:"prompt,omitempty"`
	FailOn         []string         `yaml:"fail-on,omitempty"`
	Poke           engine.Duration  `yaml:"poke,omitempty"`
	patterns       []engine.Pattern // login, password, prompt
	failOn         []engine.Pattern
}

const (
	defaultLoginPrompt    = `login:\s*$`
	defaultPasswordPrompt = `[Pp]assword:\s*$`
	defaultShellPrompt    = shell.DefaultPrompt
	loginIncorrect        = `Login incorrect|Authentication failure|Permission denied`
)

var defaultPatterns = map[string]engine.Pattern{
	"login-prompt":    {Source: defaultLoginPrompt, Re: regexp.MustCompile("(?m)" + defaultLoginPrompt)},
	"password-prompt": {Source: defaultPasswordPrompt, Re: regexp.MustCompile("(?m)" + defaultPasswordPrompt)},
	"prompt":          {Source: defaultShellPrompt, Re: regexp.MustCompile("(?m)" + defaultShellPrompt)},
}

var loginRefused = regexp.MustCompile(loginIncorrect)

// passwordPause is the wait between the password prompt and the password.
const passwordPause = 250 * time.Millisecond

func init() {
	engine.Register(engine.StepType{
		Name:    "wait-for-login",
		Config:  loginAction{},
		Summary: "Wait for the login prompt on the console, log in, and wait for the shell prompt.",
		Schema: object(obj{
			"username":        str("User to log in as."),
			"password":        str("Password; pass it from a secret parameter, e.g. ${{ params.password }}."),
			"login-prompt":    str("Regex of the login prompt (default `" + defaultLoginPrompt + "`)."),
			"password-prompt": str("Regex of the password prompt (default `" + defaultPasswordPrompt + "`)."),
			"prompt":          str("Regex of the shell prompt after login (default `" + defaultShellPrompt + "`)."),
			"fail-on":         described(obj{"type": "array", "items": obj{"type": "string"}}, "Regexes that fail the step (a kernel panic, an oops)."),
			"poke":            described(ref("duration"), "Press Enter this often while no login prompt shows (for a board that already booted)."),
		}, "username"),
		Needs:          []drivers.Capability{drivers.CapConsole},
		DefaultTimeout: 10 * time.Minute,
		Decode: func(dc *engine.DecodeContext, n *yaml.Node) engine.Action {
			a := &loginAction{LoginPrompt: defaultLoginPrompt, PasswordPrompt: defaultPasswordPrompt, Prompt: defaultShellPrompt}
			if !dc.Decode(n, a) {
				return nil
			}
			for _, f := range []struct {
				key, val string
			}{{"login-prompt", a.LoginPrompt}, {"password-prompt", a.PasswordPrompt}, {"prompt", a.Prompt}} {
				node := dc.Child(n, f.key)
				if node == nil {
					a.patterns = append(a.patterns, defaultPatterns[f.key])
					continue
				}
				p, ok := dc.Regexp(node, f.key)
				if !ok {
					return nil
				}
				if p.Re != nil {
					p.Re = regexp.MustCompile("(?m)" + p.Re.String())
				}
				a.patterns = append(a.patterns, p)
			}
			var ok bool
			if a.failOn, ok = dc.Patterns(dc.Child(n, "fail-on"), "fail-on"); !ok {
				return nil
			}
			return a
		},
	})
}

func (a *loginAction) Run(ctx context.Context, r *engine.StepRun) error {
	sh, err := r.Shell()
	if err != nil {
		return err
	}
	con := sh.Console()
	r.Secret(a.Password)
	login, pass, prompt := a.patterns[0].Re, a.patterns[1].Re, a.patterns[2].Re
	var fail []*regexp.Regexp
	for _, p := range a.failOn {
		fail = append(fail, p.Re)
	}
	if _, gone := sh.Gone(); gone {
		// A run step saw (and consumed) the login prompt after the shell
		// ended: Enter at a getty shows a fresh one.
		if _, err := con.Write([]byte("\n")); err != nil {
			return diag.Infraf("console: %v", err)
		}
	}
	// wait for the login prompt, pressing Enter now and then when asked to
	r.Waiting(fmt.Sprintf("the login prompt `%s`", a.patterns[0].Source))
	for {
		wctx, cancel := ctx, context.CancelFunc(func() {})
		if a.Poke.Duration > 0 {
			wctx, cancel = context.WithTimeout(ctx, a.Poke.Duration)
		}
		_, err := con.Expect(wctx, []*regexp.Regexp{login}, fail)
		cancel()
		if err == nil {
			break
		}
		if ctx.Err() == nil && wctx.Err() != nil {
			if _, err := con.Write([]byte("\n")); err != nil {
				return diag.Infraf("console: %v", err)
			}
			continue
		}
		return shell.WaitError(err, "no login prompt")
	}
	r.Logf("login prompt seen; logging in as %s", a.Username)
	if err := con.Send(ctx, []byte(a.Username+"\n"), 0); err != nil {
		return diag.Infraf("console: %v", err)
	}
	bad := loginRefused
	r.Waiting(fmt.Sprintf("the password prompt `%s` or the shell prompt `%s` after the user name", a.patterns[1].Source, a.patterns[2].Source))
	m, err := con.Expect(ctx, []*regexp.Regexp{pass, prompt, bad, login}, fail)
	if err != nil {
		return shell.WaitError(err, "no password prompt or shell prompt after the user name")
	}
	if m.Index == 0 {
		// login(1) prints the prompt before it turns echo off: a password
		// typed at once would be echoed onto the console.
		if err := sleepCtx(ctx, passwordPause); err != nil {
			return err
		}
		if err := con.Send(ctx, []byte(a.Password+"\n"), 0); err != nil {
			return diag.Infraf("console: %v", err)
		}
		r.Waiting(fmt.Sprintf("the shell prompt `%s` after the password", a.patterns[2].Source))
		m, err = con.Expect(ctx, []*regexp.Regexp{prompt, bad, login}, fail)
		if err != nil {
			return shell.WaitError(err, "no shell prompt after the password")
		}
		m.Index++ // align with the list above
	}
	switch m.Index {
	case 1:
		r.Logf("logged in")
		sh.LoggedIn(prompt)
		return nil
	case 2, 3:
		return diag.Failf("login as %q was refused: the board answered %q", a.Username, r.Redactor().String(m.Text))
	}
	return fmt.Errorf("unexpected console state")
}
