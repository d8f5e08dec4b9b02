package refuse_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/jitbot/jitbot/internal/refuse"
)

var errKind = errors.New("kind")

func TestPeopleArePlainInTheMessageAndRenderedByTheFrontEnd(t *testing.T) {
	err := fmt.Errorf("wrapped: %w", refuse.New(errKind, "%s may not; approved by %s (%d).", refuse.User("U1"), refuse.Users{"U2", "U3"}, 2))
	if !errors.Is(err, errKind) {
		t.Fatal("the kind is lost")
	}
	msg, ok := refuse.Message(err)
	if want := "U1 may not; approved by U2, U3 (2)."; !ok || msg != want {
		t.Fatalf("Message = %q, %v; want %q", msg, ok, want)
	}
	got, ok := refuse.Render(err, func(id string) string { return "<@" + id + ">" })
	if want := "<@U1> may not; approved by <@U2>, <@U3> (2)."; !ok || got != want {
		t.Fatalf("Render = %q, %v; want %q", got, ok, want)
	}
	if _, ok := refuse.Render(errors.New("plain"), nil); ok {
		t.Fatal("a plain error is not a refusal")
	}
}
