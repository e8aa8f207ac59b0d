package wizard

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/charmbracelet/huh"

	"github.com/thon-dev/thon/internal/config"
)

// ErrAborted is returned when the organizer leaves the wizard (Ctrl-C, or
// "no" to writing the file): nothing is written.
var ErrAborted = errors.New("thon init: stopped, nothing written")

// Run asks about the event on a terminal (in and out), one question a
// page, each proposing what Detect found; then it shows the thon.yaml the
// answers make, validated, and asks before returning it. The caller
// writes it to path.
func Run(ctx context.Context, in io.Reader, out io.Writer, d Detection, path string) ([]byte, error) {
	a := Defaults(d)
	run := func(groups ...*huh.Group) error {
		err := huh.NewForm(groups...).WithInput(in).WithOutput(out).WithShowHelp(true).RunWithContext(ctx)
		if errors.Is(err, huh.ErrUserAborted) || errors.Is(err, context.Canceled) {
			return ErrAborted
		}
		return err
	}

	teamSize := ""
	if err := run(
		huh.NewGroup(huh.NewNote().Title("thon init: what this machine has").
			Description(d.Summary()+"\n\nThe questions propose what was found; Enter accepts. Ctrl-C stops, writing nothing.").
			Next(true).NextLabel("Start")),
		huh.NewGroup(huh.NewInput().Title("The event's name").Value(&a.Event).
			Validate(nonEmpty("a name, e.g. Spring Hackathon"))),
		huh.NewGroup(huh.NewText().Title("Participants").Lines(8).Value(&a.Participants).
			Description("One a line: a name, an e-mail, or Name <e-mail>; or NAME,GROUP,EMAIL rows;\n"+
				"or paste an attendee CSV (with its header), or type the CSV file's path.\n"+
				"Ctrl+J starts a new line; Enter goes on.").
			Validate(func(s string) error {
				b := a
				b.Participants = s
				_, err := b.Attendees()
				return err
			})),
		huh.NewGroup(huh.NewInput().Title("Group of the participants the list puts in none").Value(&a.DefaultGroup).
			Description("A group name: lowercase letters a-z, digits and -.").
			Validate(func(s string) error {
				if s == "" || config.ValidName("group", s) != nil {
					return fmt.Errorf("lowercase letters a-z, digits and -, e.g. team")
				}
				return nil
			})),
		huh.NewGroup(huh.NewInput().Title("Split them into teams of").Value(&teamSize).
			Description("How many people a team; empty: one group of everyone.").
			Validate(func(s string) error {
				if n, err := strconv.Atoi(s); s != "" && (err != nil || n < 1) {
					return fmt.Errorf("a number of people, at least 1, or empty")
				}
				return nil
			})),
	); err != nil {
		return nil, err
	}
	a.TeamSize, _ = strconv.Atoi(teamSize)
	as, err := a.Attendees()
	if err != nil {
		return nil, err
	}
	a.Limits = SuggestedLimits(len(as))

	hostnames := strings.Join(a.Hostnames, ", ")
	https, rpm, conc, tpm := strconv.Itoa(a.HTTPSPort), strconv.Itoa(a.Limits.RequestsPerMinute), strconv.Itoa(a.Limits.Concurrency), strconv.Itoa(a.Limits.TokensPerMinute)
	llmDesc := "GPU: " + d.GPU + "."
	switch {
	case d.Lemonade != "":
		llmDesc += " Lemonade answers at " + d.Lemonade + "."
	case d.Llama != "":
		llmDesc += " A llama-server answers at " + d.Llama + "."
	}
	httpsDesc := "Dashboard, API and the participants' front door."
	if p := d.PortFree(443); !p.Free {
		httpsDesc += " 443 is " + p.Why + ": proposing 8443."
	} else if p.Why != "" {
		httpsDesc += " 443 is " + p.Why + "."
	}
	if err := run(
		huh.NewGroup(huh.NewSelect[string]().Title("How participants reach their IDE").Value(&a.Mode).Options(
			huh.NewOption("port: a HTTPS port each (own origin, strongest isolation)", config.ModePort),
			huh.NewOption("path: https://host/u/NAME/ (one port)", config.ModePath),
			huh.NewOption("subdomain: https://NAME.DOMAIN/ (a wildcard DNS record)", config.ModeSubdomain))),
		huh.NewGroup(huh.NewInput().Title("The domain of subdomain mode").Value(&a.Domain).
			Description("*.DOMAIN must resolve to this machine, e.g. hack.example.org.").
			Validate(nonEmpty("a domain, e.g. hack.example.org"))).
			WithHideFunc(func() bool { return a.Mode != config.ModeSubdomain }),
		huh.NewGroup(huh.NewInput().Title("The address participants reach this machine at").Value(&a.ExternalIP).
			Description("Empty: detected each time THON starts.").
			Validate(func(s string) error {
				if s != "" && net.ParseIP(s) == nil {
					return fmt.Errorf("an IP address, e.g. 192.0.2.10, or empty")
				}
				return nil
			})),
		huh.NewGroup(huh.NewInput().Title("Host names of this machine").Value(&hostnames).
			Description("For the certificate, comma-separated, e.g. hack.example.org; empty: the address only.")),
		huh.NewGroup(huh.NewSelect[string]().Title("Certificates").Value(&a.Cert).Options(
			huh.NewOption("THON's local CA (participants trust its root once)", CertLocal),
			huh.NewOption("Let's Encrypt for the host names (they must resolve here)", CertACME))),
		huh.NewGroup(huh.NewInput().Title("E-mail address for Let's Encrypt").Value(&a.ACMEEmail).
			Validate(func(s string) error {
				if !strings.Contains(s, "@") {
					return fmt.Errorf("an e-mail address, e.g. ops@example.org")
				}
				if len(splitList(hostnames)) == 0 {
					return fmt.Errorf("Let's Encrypt needs host names: go back (Shift+Tab) and give them")
				}
				return nil
			})).
			WithHideFunc(func() bool { return a.Cert != CertACME }),
		huh.NewGroup(huh.NewInput().Title("HTTPS port").Value(&https).Description(httpsDesc).Validate(port)),
		huh.NewGroup(huh.NewSelect[string]().Title("The language model of the AI assistants").Description(llmDesc).Value(&a.LLM).Options(
			huh.NewOption("llama.cpp run by THON (a GGUF model file)", LLMManaged),
			huh.NewOption("Lemonade Server", LLMLemonade),
			huh.NewOption("a llama.cpp llama-server of yours", LLMLlama),
			huh.NewOption("an OpenAI-compatible server (vLLM, Ollama, ...)", LLMOpenAI),
			huh.NewOption("none: no assistants", LLMNone))),
		huh.NewGroup(huh.NewInput().Title("The GGUF model file").Value(&a.ModelFile).
			Description("Empty: THON's small built-in test model (to try THON out).").
			Validate(func(s string) error {
				if s == "" {
					return nil
				}
				if _, err := os.Stat(expandHome(s)); err != nil {
					return fmt.Errorf("%v: the path of a .gguf file, or empty", err)
				}
				return nil
			})).
			WithHideFunc(func() bool { return a.LLM != LLMManaged }),
		huh.NewGroup(huh.NewInput().Title("The server's URL").Value(&a.LLMURL).
			DescriptionFunc(func() string {
				if a.LLM == LLMOpenAI {
					return "Its OpenAI base URL, e.g. http://127.0.0.1:11434/v1."
				}
				return "e.g. http://127.0.0.1:8080."
			}, &a.LLM).
			Validate(httpURL)).
			WithHideFunc(func() bool { return a.LLM != LLMLlama && a.LLM != LLMOpenAI }),
		huh.NewGroup(huh.NewInput().Title("The model's name on that server").Value(&a.ModelName).
			Validate(nonEmpty("the model id the server lists, e.g. qwen3:8b"))).
			WithHideFunc(func() bool { return a.LLM != LLMOpenAI }),
		huh.NewGroup(huh.NewInput().Title("Gateway: requests a minute per participant").Value(&rpm).Validate(count)).
			WithHideFunc(func() bool { return a.LLM == LLMNone }),
		huh.NewGroup(huh.NewInput().Title("Gateway: requests at a time per participant").Value(&conc).
			Description(fmt.Sprintf("Proposed for %d participants.", len(as))).Validate(count)).
			WithHideFunc(func() bool { return a.LLM == LLMNone }),
		huh.NewGroup(huh.NewInput().Title("Gateway: tokens a minute per participant").Value(&tpm).
			Description(fmt.Sprintf("Proposed for %d participants.", len(as))).Validate(count)).
			WithHideFunc(func() bool { return a.LLM == LLMNone }),
		huh.NewGroup(huh.NewInput().Title("The dashboard's password").Value(&a.AdminPassword).EchoMode(huh.EchoModePassword).
			Description("At least 8 characters; empty: set THON_ADMIN_PASSWORD when THON starts.\nIt is written into thon.yaml, which is then readable by you only.").
			Validate(func(s string) error {
				if s != "" && len(s) < 8 {
					return fmt.Errorf("at least 8 characters, or empty")
				}
				return nil
			})),
	); err != nil {
		return nil, err
	}
	a.Hostnames = splitList(hostnames)
	a.HTTPSPort, _ = strconv.Atoi(https)
	a.Limits.RequestsPerMinute, _ = strconv.Atoi(rpm)
	a.Limits.Concurrency, _ = strconv.Atoi(conc)
	a.Limits.TokensPerMinute, _ = strconv.Atoi(tpm)
	if a.Cert == CertACME && a.HTTPPort == 0 && a.HTTPSPort != 443 {
		return nil, fmt.Errorf("Let's Encrypt reaches this machine on port 80 or 443, and neither is THON's: free one of them, or choose the local CA")
	}

	data, _, err := Render(a)
	if err != nil {
		return nil, err
	}
	shown := data
	if a.AdminPassword != "" {
		if shown, err = config.SetScalars(data, [][2]string{{"auth.admin_password", "(hidden)"}}); err != nil {
			return nil, err
		}
	}
	fmt.Fprintf(out, "%s\n", shown)
	fmt.Fprintf(out, "The thon.yaml above is valid (%d participants in %d groups).\n", len(as), groupCount(as))
	write := true
	if err := run(huh.NewGroup(huh.NewConfirm().Title("Write " + path + "?").Value(&write).Affirmative("Write").Negative("Cancel"))); err != nil {
		return nil, err
	}
	if !write {
		return nil, ErrAborted
	}
	return data, nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' }) {
		out = append(out, strings.ToLower(f))
	}
	return out
}

func nonEmpty(hint string) func(string) error {
	return func(s string) error {
		if strings.TrimSpace(s) == "" {
			return errors.New(hint)
		}
		return nil
	}
}

func port(s string) error {
	if n, err := strconv.Atoi(s); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("a port, 1 to 65535")
	}
	return nil
}

func count(s string) error {
	if n, err := strconv.Atoi(s); err != nil || n < 0 {
		return fmt.Errorf("a whole number, 0 for no limit")
	}
	return nil
}

func httpURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("a URL starting with http:// or https://")
	}
	return nil
}
