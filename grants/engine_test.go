package grants_test

import (
	"testing"

	"github.com/jitbot/jitbot/internal/backendtest"
	"github.com/jitbot/jitbot/internal/enginetest"
	"github.com/jitbot/jitbot/store"
)

// TestEngine runs the engine scenarios that are mainly about this package over every store back end
// (moved here from the store conformance suite, so the store's tests need not import the engine).
func TestEngine(t *testing.T) {
	for _, b := range backendtest.All() {
		t.Run(b.Name, func(t *testing.T) {
			enginetest.RunGrants(t, func(t *testing.T) store.Store {
				s := b.Prepare(t)()
				t.Cleanup(func() { _ = s.Close() })
				return s
			})
		})
	}
}
