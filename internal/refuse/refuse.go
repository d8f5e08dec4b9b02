// Package refuse is the error type for an action jitbot refused on purpose. Its message is written for the
// person who acted and shown to them as it is; the wrapped kind lets code branch with errors.Is.
//
// People are named in a refusal with User and Users: the message (Error, Message) shows their plain ids, and
// a front end that can mention people renders them its own way with Render (the Slack bot as <@U…>), so that
// domain code writes no front end's markup.
package refuse

import (
	"errors"
	"fmt"
	"strings"
)

// Error is a refused action. Nothing was changed.
type Error struct {
	Kind error
	Msg  string
	// format and args rebuild the message with people rendered by a front end (Render).
	format string
	args   []any
}

func (e *Error) Error() string { return e.Msg }
func (e *Error) Unwrap() error { return e.Kind }

// Render returns the message with every User and Users argument rendered by mention.
func (e *Error) Render(mention func(userID string) string) string {
	if e.format == "" || mention == nil {
		return e.Msg
	}
	args := make([]any, len(e.args))
	for i, a := range e.args {
		switch a := a.(type) {
		case User:
			args[i] = mention(string(a))
		case Users:
			out := make([]string, len(a))
			for j, id := range a {
				out[j] = mention(id)
			}
			args[i] = strings.Join(out, ", ")
		default:
			args[i] = a
		}
	}
	return fmt.Sprintf(e.format, args...)
}

// User is a person's id in a refusal's arguments (format it with %s): the message shows the plain id.
type User string

func (u User) String() string { return string(u) }

// Users is a list of people in a refusal's arguments (format it with %s): the message shows the plain ids
// separated by ", ".
type Users []string

func (u Users) String() string { return strings.Join(u, ", ") }

// New returns an *Error of kind with a formatted, user-facing message.
func New(kind error, format string, args ...any) error {
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, args...), format: format, args: args}
}

// Message returns the user-facing message if err is (or wraps) a refusal, people named by their plain ids.
func Message(err error) (string, bool) {
	var r *Error
	if errors.As(err, &r) {
		return r.Msg, true
	}
	return "", false
}

// Render returns the user-facing message if err is (or wraps) a refusal, people rendered by mention.
func Render(err error, mention func(userID string) string) (string, bool) {
	var r *Error
	if errors.As(err, &r) {
		return r.Render(mention), true
	}
	return "", false
}
