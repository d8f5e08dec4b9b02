package policy_test

// The policy's tests read policies with every provider type of this build: linking grants/providers
// registers them (policy.Register), as it does in jitbot itself.
import _ "github.com/jitbot/jitbot/grants/providers"
