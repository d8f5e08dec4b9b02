package grants

import (
	"crypto/sha256"
	"encoding/hex"
	"maps"
	"slices"
	"time"

	"github.com/jitbot/jitbot/store"
)

// BindingKey names the provider grant that overlapping leases share: the same provider instance, principal and
// target. The key is a hash so that no principal or target detail ends up in index key names.
func BindingKey(provider, principal string, target map[string]string) string {
	h := sha256.New()
	write := func(s string) {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	write(provider)
	write(principal)
	for _, k := range slices.Sorted(maps.Keys(target)) {
		write(k)
		write(target[k])
	}
	return hex.EncodeToString(h.Sum(nil))[:32]
}

// LeaseSpec is what an approved (or break-glass) request turns into.
type LeaseSpec struct {
	RequestID   string
	UserID      string
	Role        string
	Provider    string
	Principal   string
	Target      map[string]string
	Duration    time.Duration
	MaxDuration time.Duration
	BreakGlass  bool
	// HeartbeatTimeout > 0 makes the grant task-bound (see store.Grant.HeartbeatTimeout).
	HeartbeatTimeout time.Duration
}

// NewLease returns the write-ahead record of a grant: stored in state activating before any provider call, and
// due for the sweeper at resumeAt so that a crash before activation completes is resumed.
func NewLease(spec LeaseSpec, now, resumeAt time.Time) store.Grant {
	return store.Grant{
		ID:               store.NewID("g"),
		RequestID:        spec.RequestID,
		UserID:           spec.UserID,
		Role:             spec.Role,
		Provider:         spec.Provider,
		Principal:        spec.Principal,
		Target:           maps.Clone(spec.Target),
		BindingKey:       BindingKey(spec.Provider, spec.Principal, spec.Target),
		State:            store.GrantActivating,
		Duration:         spec.Duration,
		MaxDuration:      spec.MaxDuration,
		BreakGlass:       spec.BreakGlass,
		HeartbeatTimeout: spec.HeartbeatTimeout,
		CreatedAt:        now,
		DueAt:            resumeAt,
	}
}
