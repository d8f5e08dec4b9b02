package grants_test

import (
	"testing"

	"github.com/jitbot/jitbot/internal/enginetest"
)

// TestEngine runs the engine scenarios that are mainly about this package on every store back end.
func TestEngine(t *testing.T) { enginetest.RunGrants(t) }
