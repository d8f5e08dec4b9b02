package approvals

import (
	"errors"

	"github.com/jitbot/jitbot/internal/refuse"
)

// Kinds of refusal. A *Refusal wraps one of them; test with errors.Is. The bot turns a refusal's message into
// an ephemeral Slack answer as it is, so messages are written for the person who acted.
var (
	ErrUnknownRole     = errors.New("unknown role")
	ErrNotEligible     = errors.New("not eligible")
	ErrSelfApproval    = errors.New("self-approval")
	ErrAlreadyApproved = errors.New("already approved by this approver")
	ErrAlreadyDecided  = errors.New("request already decided")
	ErrBadDuration     = errors.New("bad duration")
	ErrBadReason       = errors.New("bad reason")
	ErrNoIdentity      = errors.New("no provider identity")
	ErrNotFound        = errors.New("no such request")
	ErrUnavailable     = errors.New("eligibility cannot be checked")
	// ErrTokenReused: the pipeline's ID token already created a request (a token creates one).
	ErrTokenReused = errors.New("token already used")
)

// Refusal is a refused request, approval, denial or cancellation; nothing was changed.
type Refusal = refuse.Error

func refusal(kind error, format string, args ...any) error { return refuse.New(kind, format, args...) }
