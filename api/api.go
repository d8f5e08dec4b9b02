// Package api is jitbot's HTTP API for systems (CI/CD pipelines), served under /api/v1 beside the Slack
// handlers. Like bot/, it is a front end without business rules: it authenticates the caller (an OIDC ID
// token or a jitbot API token, verified by package workload), matches it to a policy workload, and hands
// the call to approvals and grants, which enforce every rule. The contract is api/openapi.yaml.
package api

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/jitbot/jitbot/approvals"
	"github.com/jitbot/jitbot/grants"
	"github.com/jitbot/jitbot/internal/refuse"
	"github.com/jitbot/jitbot/policy"
	"github.com/jitbot/jitbot/store"
	"github.com/jitbot/jitbot/workload"
)

// OpenAPI is the API's contract, served at /api/v1/openapi.yaml.
//
//go:embed openapi.yaml
var OpenAPI []byte

// MaxBodyBytes bounds a request body.
const MaxBodyBytes = 16 << 10

// Wait limits: a long poll waits at most MaxWait (below the server's write timeout), DefaultWait when the
// caller names no timeout.
const (
	DefaultWait = 20 * time.Second
	MaxWait     = 25 * time.Second
)

// Approvals is what the API needs from the request state machine.
type Approvals interface {
	CreateForWorkload(ctx context.Context, in approvals.WorkloadRequest) (store.Request, error)
	Cancel(ctx context.Context, requestID, by string) (store.Request, error)
	Policy() *policy.Policy
}

// Grants is what the API needs from the grant lifecycle.
type Grants interface {
	Heartbeat(ctx context.Context, grantID, by string) (store.Grant, error)
	Release(ctx context.Context, grantID, by string) (store.Grant, error)
}

// Store is the read side the API needs.
type Store interface {
	GetRequest(ctx context.Context, id string) (store.Request, error)
	GetGrant(ctx context.Context, id string) (store.Grant, error)
	Commit(ctx context.Context, b store.Batch) error
	MarkSeen(ctx context.Context, key string, ttl time.Duration) (bool, error)
}

// Publisher receives the audit line of refused authentications.
type Publisher interface {
	Publish(ctx context.Context, events ...store.AuditEvent)
}

// Options configures a Server. Auth, Approvals, Grants and Store are required.
type Options struct {
	Auth      workload.Authenticator
	Approvals Approvals
	Grants    Grants
	Store     Store
	Publisher Publisher
	Now       func() time.Time
	// RefusalWindow is how often, at most, one refused-authentication audit line is written per reason
	// (across replicas, through the store). Default 1m.
	RefusalWindow time.Duration
	// PollInterval is how often a long poll re-reads the store when no event woke it (a decision made on
	// another replica). Default 1s.
	PollInterval time.Duration
}

// Server serves /api/v1.
type Server struct {
	opts Options

	mu       sync.Mutex
	waiters  map[string][]chan struct{} // request id -> long polls to wake
	refused  map[string]int             // reason -> refusals not yet counted in an audit line
	lastLine map[string]int64           // reason -> the window this replica last wrote (or tried) a line for
}

// New validates opts and returns a Server.
func New(opts Options) (*Server, error) {
	if opts.Auth == nil || opts.Approvals == nil || opts.Grants == nil || opts.Store == nil {
		return nil, errors.New("api: Auth, Approvals, Grants and Store are required")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.RefusalWindow <= 0 {
		opts.RefusalWindow = time.Minute
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = time.Second
	}
	return &Server{opts: opts, waiters: map[string][]chan struct{}{}, refused: map[string]int{}, lastLine: map[string]int64{}}, nil
}

// Handler returns the routes, all under /api/v1/.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/openapi.yaml", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/yaml")
		_, _ = w.Write(OpenAPI)
	})
	mux.HandleFunc("POST /api/v1/requests", s.authed(s.createRequest))
	mux.HandleFunc("GET /api/v1/requests/{id}", s.authed(s.getRequest))
	mux.HandleFunc("GET /api/v1/requests/{id}/wait", s.authed(s.waitRequest))
	mux.HandleFunc("POST /api/v1/requests/{id}/cancel", s.authed(s.cancelRequest))
	mux.HandleFunc("GET /api/v1/grants/{id}", s.authed(s.getGrant))
	mux.HandleFunc("POST /api/v1/grants/{id}/heartbeat", s.authed(s.heartbeat))
	mux.HandleFunc("POST /api/v1/grants/{id}/release", s.authed(s.release))
	mux.HandleFunc("/api/v1/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("There is no API route %s %s; see api/openapi.yaml.", r.Method, r.URL.Path))
	})
	return mux
}

// Publish implements audit.Subscriber: a committed event about a request wakes its long polls at once.
func (s *Server) Publish(_ context.Context, events ...store.AuditEvent) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range events {
		for _, ch := range s.waiters[e.RequestID] {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}
}

// caller is an authenticated workload.
type caller struct {
	id        workload.Identity
	workloads []string // the policy workloads the identity matches, sorted
	pipeline  store.PipelineContext
}

func (c *caller) owns(name string, pc *store.PipelineContext) bool {
	if !slices.Contains(c.workloads, name) || pc == nil {
		return false
	}
	if pc.Method != c.pipeline.Method || pc.Subject != c.pipeline.Subject || pc.Issuer != c.pipeline.Issuer {
		return false
	}
	return pc.RunID == "" || pc.RunID == c.pipeline.RunID
}

type handler func(w http.ResponseWriter, r *http.Request, c *caller)

// authed authenticates the bearer credential and matches it to policy workloads before calling h.
func (s *Server) authed(h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		w.Header().Set("Cache-Control", "no-store")
		bearer, ok := workload.BearerFromHeader(r.Header.Get("Authorization"))
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="jitbot"`)
			s.refuse(ctx, r, "missing_credentials")
			writeError(w, http.StatusUnauthorized, "unauthenticated", "Send the CI job's OIDC ID token (or a jitbot API token) as Authorization: Bearer <token>.", "reason", "missing_credentials")
			return
		}
		id, err := s.opts.Auth.Authenticate(ctx, bearer)
		if err != nil {
			reason := workload.Reason(err)
			if workload.Retryable(err) {
				zerolog.Ctx(ctx).Warn().Str("reason", reason).Msg("api: credentials could not be checked")
				writeError(w, http.StatusServiceUnavailable, "unavailable", "jitbot could not check the token right now ("+reason+"); retry shortly.", "reason", reason)
				return
			}
			if reason == "" {
				zerolog.Ctx(ctx).Error().Err(err).Msg("api: authentication failed")
				writeError(w, http.StatusInternalServerError, "internal", "jitbot could not check the token; the server log has details.")
				return
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="jitbot", error="invalid_token"`)
			s.refuse(ctx, r, reason)
			writeError(w, http.StatusUnauthorized, "unauthenticated", "The token was refused: "+authMessage(err), "reason", reason)
			return
		}
		pol := s.opts.Approvals.Policy()
		c := &caller{id: id, workloads: matchWorkloads(pol, id), pipeline: pipelineContext(pol, id)}
		if len(c.workloads) == 0 {
			s.refuse(ctx, r, "no_workload")
			writeError(w, http.StatusForbidden, "no_workload", "The token is valid, but it matches no workload in the policy: "+noMatchWhy(pol, id), "reason", "no_workload")
			return
		}
		log := zerolog.Ctx(ctx).With().Strs("workloads", c.workloads).Str("subject", id.Subject).Logger()
		h(w, r.WithContext(log.WithContext(ctx)), c)
	}
}

// authMessage is the refusal's message for a person; workload guarantees it carries no token material.
func authMessage(err error) string {
	var ae *workload.AuthError
	if errors.As(err, &ae) {
		return ae.Msg
	}
	return err.Error()
}

// refuse writes one audit line per reason per RefusalWindow, counting the refusals it stands for: a flood
// of bad tokens costs one store write per reason and window (across replicas, deduplicated through the
// store), never one per request. The line holds the reason code, never the token.
func (s *Server) refuse(ctx context.Context, r *http.Request, reason string) {
	now := s.opts.Now()
	window := now.Truncate(s.opts.RefusalWindow).Unix()
	s.mu.Lock()
	s.refused[reason]++
	if s.lastLine[reason] == window {
		s.mu.Unlock()
		return
	}
	s.lastLine[reason] = window
	n := s.refused[reason]
	s.refused[reason] = 0
	s.mu.Unlock()
	first, err := s.opts.Store.MarkSeen(ctx, "api-auth-refused:"+reason+":"+strconv.FormatInt(window, 10), 2*s.opts.RefusalWindow)
	if err != nil || !first {
		return // another replica wrote this window's line
	}
	ev := store.AuditEvent{Type: store.EventAuthRefused, At: now, Actor: "system:api", Details: map[string]string{
		"reason": reason, "refusals": strconv.Itoa(n), "path": clip(r.URL.Path, 200), "remote": clip(r.RemoteAddr, 100),
		"window": s.opts.RefusalWindow.String(),
	}}
	if err := s.opts.Store.Commit(ctx, store.Batch{Audit: []store.AuditEvent{ev}}); err != nil {
		zerolog.Ctx(ctx).Warn().Err(err).Msg("api: could not record refused authentication")
		return
	}
	if s.opts.Publisher != nil {
		s.opts.Publisher.Publish(ctx, ev)
	}
}

// ---- requests ----

type createBody struct {
	Role     string `json:"role"`
	Duration string `json:"duration"`
	Reason   string `json:"reason"`
}

func (s *Server) createRequest(w http.ResponseWriter, r *http.Request, c *caller) {
	var body createBody
	if !decode(w, r, &body) {
		return
	}
	body.Role = strings.TrimSpace(body.Role)
	if body.Role == "" {
		writeError(w, http.StatusBadRequest, "invalid_request", "role is required: name the role to request, as in the policy.")
		return
	}
	var d time.Duration
	if body.Duration != "" {
		var err error
		if d, err = policy.ParseDuration(body.Duration); err != nil {
			writeError(w, http.StatusBadRequest, "bad_duration", "duration: "+err.Error())
			return
		}
		if d <= 0 {
			writeError(w, http.StatusBadRequest, "bad_duration", "duration must be positive, such as 30m.")
			return
		}
	}
	pol := s.opts.Approvals.Policy()
	role, ok := pol.Role(body.Role)
	if !ok {
		writeError(w, http.StatusNotFound, "unknown_role", fmt.Sprintf("There is no role %q in the policy.", body.Role))
		return
	}
	name := ""
	for _, wl := range c.workloads {
		if slices.Contains(role.Requesters.Workloads, wl) {
			name = wl
			break
		}
	}
	if name == "" {
		writeError(w, http.StatusForbidden, "not_allowed", fmt.Sprintf("Workload %s may not request %s; an admin must add it to the role's requesters.workloads.", strings.Join(c.workloads, ", "), role.Name))
		return
	}
	req, err := s.opts.Approvals.CreateForWorkload(r.Context(), approvals.WorkloadRequest{
		Workload: name, Role: role.Name, Duration: d, Reason: body.Reason, Claims: c.id.Claims, Pipeline: c.pipeline,
		TokenID: c.id.TokenID, TokenExpiry: c.id.Expiry,
	})
	if errors.Is(err, approvals.ErrTokenReused) {
		zerolog.Ctx(r.Context()).Warn().Str("reason", "token_reused").Msg("api: an ID token that already created a request was sent to create another")
		s.refuse(r.Context(), r, "token_reused")
	}
	if err != nil {
		writeRefusal(w, r, err)
		return
	}
	zerolog.Ctx(r.Context()).Info().Str("request_id", req.ID).Str("workload", name).Str("role", role.Name).Msg("api: request created")
	writeJSON(w, http.StatusCreated, s.requestView(r.Context(), req))
}

// ownRequest reads a request and checks that the caller made it. Someone else's request is "not found", so
// that ids of other pipelines cannot be probed.
func (s *Server) ownRequest(w http.ResponseWriter, r *http.Request, c *caller) (store.Request, bool) {
	id := r.PathValue("id")
	req, err := s.opts.Store.GetRequest(r.Context(), id)
	if err == nil && !req.IsWorkload() {
		err = store.ErrNotFound
	}
	if err == nil && !c.owns(req.Workload, req.Pipeline) {
		zerolog.Ctx(r.Context()).Warn().Str("request_id", id).Msg("api: a workload asked for a request it does not own")
		err = store.ErrNotFound
	}
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("There is no request %s made by this workload and run.", id))
		return req, false
	}
	if err != nil {
		writeInternal(w, r, err)
		return req, false
	}
	return req, true
}

func (s *Server) getRequest(w http.ResponseWriter, r *http.Request, c *caller) {
	if req, ok := s.ownRequest(w, r, c); ok {
		writeJSON(w, http.StatusOK, s.requestView(r.Context(), req))
	}
}

// settled reports whether a long poll can answer: the request was decided and its grant, if any, is no
// longer being applied.
func settled(v requestView) bool {
	if v.State == string(store.RequestPending) {
		return false
	}
	return v.Grant == nil || v.Grant.State != string(store.GrantActivating)
}

func (s *Server) waitRequest(w http.ResponseWriter, r *http.Request, c *caller) {
	timeout := DefaultWait
	if q := r.URL.Query().Get("timeout"); q != "" {
		d, err := policy.ParseDuration(q)
		if err != nil || d < 0 {
			writeError(w, http.StatusBadRequest, "bad_timeout", fmt.Sprintf("timeout %q is not a duration such as 20s (at most %s).", q, MaxWait))
			return
		}
		timeout = min(d, MaxWait)
	}
	req, ok := s.ownRequest(w, r, c)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	wake := make(chan struct{}, 1)
	s.mu.Lock()
	s.waiters[req.ID] = append(s.waiters[req.ID], wake)
	s.mu.Unlock()
	defer s.unwait(req.ID, wake)
	poll := time.NewTicker(s.opts.PollInterval)
	defer poll.Stop()
	for {
		v := s.requestView(ctx, req)
		if settled(v) {
			writeJSON(w, http.StatusOK, v)
			return
		}
		select {
		case <-ctx.Done():
			if r.Context().Err() != nil {
				return // the client went away
			}
			writeJSON(w, http.StatusOK, v) // still pending: the client asks again
			return
		case <-wake:
		case <-poll.C:
		}
		fresh, err := s.opts.Store.GetRequest(ctx, req.ID)
		if err != nil && ctx.Err() == nil {
			writeInternal(w, r, err)
			return
		}
		if err == nil {
			req = fresh
		}
	}
}

func (s *Server) unwait(id string, ch chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ws := slices.DeleteFunc(s.waiters[id], func(c chan struct{}) bool { return c == ch })
	if len(ws) == 0 {
		delete(s.waiters, id)
	} else {
		s.waiters[id] = ws
	}
}

func (s *Server) cancelRequest(w http.ResponseWriter, r *http.Request, c *caller) {
	req, ok := s.ownRequest(w, r, c)
	if !ok {
		return
	}
	out, err := s.opts.Approvals.Cancel(r.Context(), req.ID, req.Requester)
	if err != nil {
		writeRefusal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s.requestView(r.Context(), out))
}

// ---- grants ----

// ownGrant reads a grant and checks that the caller's request made it.
func (s *Server) ownGrant(w http.ResponseWriter, r *http.Request, c *caller) (store.Grant, bool) {
	id := r.PathValue("id")
	g, err := s.opts.Store.GetGrant(r.Context(), id)
	var req store.Request
	if err == nil {
		req, err = s.opts.Store.GetRequest(r.Context(), g.RequestID)
	}
	if err == nil && (!req.IsWorkload() || req.GrantID != g.ID || g.UserID != req.Requester || !c.owns(req.Workload, req.Pipeline)) {
		zerolog.Ctx(r.Context()).Warn().Str("grant_id", id).Msg("api: a workload asked for a grant it does not own")
		err = store.ErrNotFound
	}
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("There is no grant %s held by this workload and run.", id))
		return g, false
	}
	if err != nil {
		writeInternal(w, r, err)
		return g, false
	}
	return g, true
}

func (s *Server) getGrant(w http.ResponseWriter, r *http.Request, c *caller) {
	if g, ok := s.ownGrant(w, r, c); ok {
		writeJSON(w, http.StatusOK, grantViewOf(g))
	}
}

func (s *Server) heartbeat(w http.ResponseWriter, r *http.Request, c *caller) {
	if !emptyBody(w, r) {
		return
	}
	g, ok := s.ownGrant(w, r, c)
	if !ok {
		return
	}
	out, err := s.opts.Grants.Heartbeat(r.Context(), g.ID, g.UserID)
	if err != nil {
		writeRefusal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, grantViewOf(out))
}

func (s *Server) release(w http.ResponseWriter, r *http.Request, c *caller) {
	if !emptyBody(w, r) {
		return
	}
	g, ok := s.ownGrant(w, r, c)
	if !ok {
		return
	}
	out, err := s.opts.Grants.Release(r.Context(), g.ID, g.UserID)
	if errors.Is(err, grants.ErrNotActive) {
		// Releasing what already ended is what a client on its way out wants: answer with the grant as it is.
		if cur, gerr := s.opts.Store.GetGrant(r.Context(), g.ID); gerr == nil {
			writeJSON(w, http.StatusOK, grantViewOf(cur))
			return
		}
	}
	if err != nil {
		writeRefusal(w, r, err)
		return
	}
	zerolog.Ctx(r.Context()).Info().Str("grant_id", g.ID).Str("state", string(out.State)).Msg("api: grant released")
	writeJSON(w, http.StatusOK, grantViewOf(out))
}

// ---- encoding ----

// decode reads a JSON body strictly: at most MaxBodyBytes, one object, no unknown fields.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(strings.ToLower(ct), "application/json") {
		writeError(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "Send the body as Content-Type: application/json.")
		return false
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil && dec.More() {
		err = errors.New("extra data after the JSON object")
	}
	if err == nil {
		if _, terr := dec.Token(); terr != io.EOF {
			err = errors.New("extra data after the JSON object")
		}
	}
	var tooBig *http.MaxBytesError
	switch {
	case err == nil:
		return true
	case errors.As(err, &tooBig):
		writeError(w, http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("The request body is larger than %d bytes.", MaxBodyBytes))
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		writeError(w, http.StatusBadRequest, "unknown_field", "Unknown field "+strings.TrimPrefix(err.Error(), "json: unknown field ")+
			"; the body takes role, duration and reason. Pipeline details come from the token, never from the body.")
	case errors.Is(err, io.EOF):
		writeError(w, http.StatusBadRequest, "invalid_json", "The body is empty; send a JSON object such as {\"role\": \"deploy\", \"duration\": \"15m\", \"reason\": \"release v1.2\"}.")
	default:
		writeError(w, http.StatusBadRequest, "invalid_json", "The body is not a valid JSON object of the expected shape: "+clip(err.Error(), 200))
	}
	return false
}

// emptyBody accepts no body, or an empty JSON object.
func emptyBody(w http.ResponseWriter, r *http.Request) bool {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("The request body is larger than %d bytes.", MaxBodyBytes))
		return false
	}
	if t := strings.TrimSpace(string(data)); t != "" && t != "{}" {
		writeError(w, http.StatusBadRequest, "unknown_field", "This call takes no body (or {}).")
		return false
	}
	return true
}

type errorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Reason  string `json:"reason,omitempty"`
}

func writeError(w http.ResponseWriter, status int, code, msg string, kv ...string) {
	b := errorBody{Code: code, Message: msg}
	if len(kv) == 2 && kv[0] == "reason" {
		b.Reason = kv[1]
	}
	writeJSON(w, status, b)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeInternal(w http.ResponseWriter, r *http.Request, err error) {
	zerolog.Ctx(r.Context()).Error().Err(err).Msg("api: internal error")
	writeError(w, http.StatusInternalServerError, "internal", "jitbot could not complete the call; it is safe to retry. The server log has details.")
}

// writeRefusal maps the engine's refusals to status codes and stable codes; the message is the engine's,
// written for a person.
func writeRefusal(w http.ResponseWriter, r *http.Request, err error) {
	msg, ok := refuse.Message(err)
	if !ok {
		writeInternal(w, r, err)
		return
	}
	for _, m := range refusalCodes {
		if errors.Is(err, m.kind) {
			writeError(w, m.status, m.code, msg)
			return
		}
	}
	writeError(w, http.StatusConflict, "refused", msg)
}

var refusalCodes = []struct {
	kind   error
	status int
	code   string
}{
	{approvals.ErrUnknownRole, http.StatusNotFound, "unknown_role"},
	{approvals.ErrNotEligible, http.StatusForbidden, "not_allowed"},
	{approvals.ErrConditionFailed, http.StatusForbidden, "condition_failed"},
	{approvals.ErrBadDuration, http.StatusBadRequest, "bad_duration"},
	{approvals.ErrBadReason, http.StatusBadRequest, "bad_reason"},
	{approvals.ErrNoIdentity, http.StatusForbidden, "no_principal"},
	{approvals.ErrAlreadyDecided, http.StatusConflict, "already_decided"},
	{approvals.ErrTokenReused, http.StatusConflict, "token_reused"},
	{approvals.ErrNotFound, http.StatusNotFound, "not_found"},
	{approvals.ErrUnavailable, http.StatusServiceUnavailable, "unavailable"},
	{grants.ErrNotFound, http.StatusNotFound, "not_found"},
	{grants.ErrNotHolder, http.StatusNotFound, "not_found"},
	{grants.ErrHeartbeatMissed, http.StatusConflict, "heartbeat_missed"},
	{grants.ErrNotActive, http.StatusConflict, "not_active"},
	{grants.ErrBusy, http.StatusServiceUnavailable, "busy"},
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
