// Package bot is jitbot's Slack front end: transports (HTTP with signature checks, Socket Mode), the slash
// command grammar, modals, Block Kit rendering, App Home and the audit channel. It holds no business rules:
// every decision is made by approvals and grants, on the server, whatever a button carried.
package bot

import (
	"fmt"
	"strings"
	"time"

	"github.com/jitbot/jitbot/policy"
)

// Verb is a slash-command subcommand.
type Verb string

const (
	VerbModal   Verb = ""        // bare command: open the request modal
	VerbRequest Verb = "request" // request <role> <duration> <reason…>
	VerbRoles   Verb = "roles"   // what I may request
	VerbList    Verb = "list"    // my requests and grants
	VerbDone    Verb = "done"    // done <grant>
	VerbExtend  Verb = "extend"  // extend <grant> <duration>
	VerbCancel  Verb = "cancel"  // cancel <request>
	VerbHelp    Verb = "help"
	VerbBreak   Verb = "breakglass" // breakglass <role> <duration> <reason…>
)

// Command is a parsed slash command.
type Command struct {
	Verb     Verb
	Role     string
	Duration time.Duration
	Reason   string
	ID       string // grant or request id
}

// UsageError is a malformed command; its message shows the correct usage.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

// Usage is the help text for command name (e.g. "/jit").
func Usage(name string) string {
	return fmt.Sprintf("*Usage*\n"+
		"`%[1]s` opens a form to request access\n"+
		"`%[1]s request <role> <duration> <reason…>` asks for a role, e.g. `%[1]s request prod-db-admin 1h INC-4521 failover`\n"+
		"`%[1]s roles` lists the roles you may request\n"+
		"`%[1]s list` shows your requests and active grants\n"+
		"`%[1]s done <grant>` ends a grant early\n"+
		"`%[1]s extend <grant> <duration>` extends an active grant within the role's maximum\n"+
		"`%[1]s cancel <request>` withdraws a pending request\n"+
		"`%[1]s breakglass <role> <duration> <reason…>` takes a role at once while you are on call (announced and reviewed)\n"+
		"`%[1]s help` shows this help", name)
}

// Parse parses the text after the command name.
func Parse(name, text string) (Command, error) {
	words := strings.Fields(text)
	if len(words) == 0 {
		return Command{Verb: VerbModal}, nil
	}
	verb, args := Verb(strings.ToLower(words[0])), words[1:]
	usage := func(form string) error {
		return &UsageError{Msg: fmt.Sprintf("Usage: `%s %s`", name, form)}
	}
	switch verb {
	case VerbRequest, VerbBreak:
		if len(args) < 3 {
			return Command{}, &UsageError{Msg: fmt.Sprintf("Usage: `%s %s <role> <duration> <reason…>` (for example `%s %s prod-db-admin 1h INC-4521 failover`)", name, verb, name, verb)}
		}
		d, err := policy.ParseDuration(args[1])
		if err != nil {
			return Command{}, &UsageError{Msg: fmt.Sprintf("%s.\nUsage: `%s %s <role> <duration> <reason…>`", err, name, verb)}
		}
		return Command{Verb: verb, Role: args[0], Duration: d, Reason: strings.Join(args[2:], " ")}, nil
	case VerbRoles, VerbList, VerbHelp:
		if len(args) != 0 {
			return Command{}, usage(string(verb))
		}
		return Command{Verb: verb}, nil
	case VerbDone, VerbCancel:
		what := "grant"
		if verb == VerbCancel {
			what = "request"
		}
		if len(args) != 1 {
			return Command{}, usage(fmt.Sprintf("%s <%s>", verb, what))
		}
		return Command{Verb: verb, ID: args[0]}, nil
	case VerbExtend:
		if len(args) != 2 {
			return Command{}, usage("extend <grant> <duration>")
		}
		d, err := policy.ParseDuration(args[1])
		if err != nil {
			return Command{}, &UsageError{Msg: fmt.Sprintf("%s.\nUsage: `%s extend <grant> <duration>`", err, name)}
		}
		return Command{Verb: verb, ID: args[0], Duration: d}, nil
	}
	return Command{}, &UsageError{Msg: fmt.Sprintf("I don't know `%s`.\n%s", words[0], Usage(name))}
}
