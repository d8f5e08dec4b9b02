package grants_test

import (
	"fmt"
	"testing"

	"github.com/jitbot/jitbot/grants"
)

// The access-remains detail names the objects sorted, each once, and at most ten of them.
func TestOtherText(t *testing.T) {
	if got, want := grants.OtherText([]string{"rolebinding/b", "rolebinding/a", "rolebinding/b"}), "rolebinding/a; rolebinding/b"; got != want {
		t.Errorf("OtherText = %q, want %q", got, want)
	}
	var twelve []string
	for i := 12; i >= 1; i-- {
		twelve = append(twelve, fmt.Sprintf("group/%02d", i))
	}
	want := "group/01; group/02; group/03; group/04; group/05; group/06; group/07; group/08; group/09; group/10; and 2 more"
	if got := grants.OtherText(twelve); got != want {
		t.Errorf("OtherText(12 objects) = %q, want %q", got, want)
	}
}
