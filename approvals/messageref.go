package approvals

import (
	"context"
	"errors"
	"slices"
	"strings"

	"github.com/jitbot/jitbot/store"
)

// MessageRef is where a front end posted a message about a request: a Slack channel and the message's
// timestamp. The engine keeps it on the request (the front end writes no record itself), so that the
// message is updated in place when the request or its grant changes, after a restart too.
type MessageRef struct {
	Channel string
	TS      string
}

// The request meta keys holding message references. slack_dms lists the holder's DMs about the grant
// ("channel/ts" separated by spaces).
const (
	metaMessageChannel = "slack_channel"
	metaMessageTS      = "slack_ts"
	metaDMs            = "slack_dms"
)

// MaxDMRefs bounds the DMs remembered per request (the grant DM and its reminders); AddDMRef keeps the last.
const MaxDMRefs = 8

// MessageRefOf returns where the request's approval message is; ok is false when none was recorded.
func MessageRefOf(req store.Request) (ref MessageRef, ok bool) {
	ref = MessageRef{Channel: req.Meta[metaMessageChannel], TS: req.Meta[metaMessageTS]}
	return ref, ref.TS != ""
}

// DMRefsOf returns the DMs about the request's grant, oldest first.
func DMRefsOf(req store.Request) []MessageRef {
	var out []MessageRef
	for _, f := range strings.Fields(req.Meta[metaDMs]) {
		if ch, ts, ok := strings.Cut(f, "/"); ok {
			out = append(out, MessageRef{Channel: ch, TS: ts})
		}
	}
	return out
}

// SetMessageRef records where the request's approval message is, retrying compare-and-swap conflicts.
// moved reports whether the request changed since version seen (the one the posted message was rendered
// from): the message then needs rendering again. A failure reports moved too.
func (s *Service) SetMessageRef(ctx context.Context, requestID string, ref MessageRef, seen int64) (moved bool, err error) {
	for range casRetries {
		req, err := s.opts.Store.GetRequest(ctx, requestID)
		if err != nil {
			return true, err
		}
		prev := req.Version
		moved = moved || prev != seen
		if req.Meta == nil {
			req.Meta = map[string]string{}
		}
		req.Meta[metaMessageChannel], req.Meta[metaMessageTS] = ref.Channel, ref.TS
		err = s.commitAndPublish(ctx, store.Batch{Requests: []store.RequestPut{{Request: &req, PrevVersion: prev}}})
		if !errors.Is(err, store.ErrConflict) {
			return moved, err
		}
		moved = true
	}
	return true, store.ErrConflict
}

// AddDMRef records a DM about the request's grant (kept: the last MaxDMRefs), retrying compare-and-swap
// conflicts. A reference already recorded, or an empty request id, changes nothing.
func (s *Service) AddDMRef(ctx context.Context, requestID string, ref MessageRef) error {
	if requestID == "" {
		return nil
	}
	for range casRetries {
		req, err := s.opts.Store.GetRequest(ctx, requestID)
		if err != nil {
			return err
		}
		refs := strings.Fields(req.Meta[metaDMs])
		one := ref.Channel + "/" + ref.TS
		if slices.Contains(refs, one) {
			return nil
		}
		refs = append(refs, one)
		if len(refs) > MaxDMRefs {
			refs = refs[len(refs)-MaxDMRefs:]
		}
		prev := req.Version
		if req.Meta == nil {
			req.Meta = map[string]string{}
		}
		req.Meta[metaDMs] = strings.Join(refs, " ")
		err = s.commitAndPublish(ctx, store.Batch{Requests: []store.RequestPut{{Request: &req, PrevVersion: prev}}})
		if !errors.Is(err, store.ErrConflict) {
			return err
		}
	}
	return store.ErrConflict
}
