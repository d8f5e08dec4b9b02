// Package refuse is the error type for an action jitbot refused on purpose. Its message is written for the
// person who acted and shown to them as it is; the wrapped kind lets code branch with errors.Is.
package refuse

import (
	"errors"
	"fmt"
)

// Error is a refused action. Nothing was changed.
type Error struct {
	Kind error
	Msg  string
}

func (e *Error) Error() string { return e.Msg }
func (e *Error) Unwrap() error { return e.Kind }

// New returns an *Error of kind with a formatted, user-facing message.
func New(kind error, format string, args ...any) error {
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, args...)}
}

// Message returns the user-facing message if err is (or wraps) a refusal.
func Message(err error) (string, bool) {
	var r *Error
	if errors.As(err, &r) {
		return r.Msg, true
	}
	return "", false
}
