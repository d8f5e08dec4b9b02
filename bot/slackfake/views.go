package slackfake

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// View is a modal or Home tab as the emulator holds it.
type View struct {
	ID              string
	Type            string // "modal" or "home"
	User            string // the user who sees it
	CallbackID      string
	PrivateMetadata string
	ExternalID      string
	Hash            string
	RootViewID      string
	PreviousViewID  string
	Title           string // modal title text
	// Blocks is the view's blocks array as JSON.
	Blocks json.RawMessage
	// JSON is the whole view object as Slack returns it from views.* and
	// sends it in interaction payloads.
	JSON json.RawMessage
	// Errors holds the field errors of the last response_action "errors"
	// answered to a submission of this view (block_id -> message).
	Errors map[string]string
	Open   bool
}

type viewRecord struct {
	id, typ, user   string
	body            map[string]any // the view object as given by the bot
	blocks          json.RawMessage
	hash            string
	externalID      string
	rootID, prevID  string
	open            bool
	errors          map[string]string
	updatedAt       time.Time
	submittedValues map[string]map[string]any
}

type trigger struct {
	user   string
	issued time.Time
	used   bool
	viewID string // the modal the interaction came from, if any
}

// IssueTrigger hands out a fresh trigger_id for user, as Slack does with every
// slash command and interaction. SlashCommand, ClickButton and SubmitView
// issue their own; this is for tests that call views.open directly.
func (s *Server) IssueTrigger(user string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.issueTriggerLocked(user, "")
}

func (s *Server) issueTriggerLocked(user, viewID string) string {
	s.seq++
	// Documented format: "132456.7890123.abcdef".
	id := fmt.Sprintf("%d.%d.%s", s.seq, s.now().UnixNano()/1e3%1e7, randHex(16))
	s.triggers[id] = &trigger{user: user, issued: s.now(), viewID: viewID}
	return id
}

// exchangeTriggerLocked checks a trigger_id (views.open / views.push errors:
// invalid_trigger_id, exchanged_trigger_id, expired_trigger_id).
func (s *Server) exchangeTriggerLocked(id string) (*trigger, *apiResult) {
	if id == "" {
		res := fail("invalid_arguments", "missing required field: trigger_id")
		return nil, &res
	}
	t, found := s.triggers[id]
	switch {
	case !found:
		res := fail("invalid_trigger_id")
		return nil, &res
	case t.used:
		res := fail("exchanged_trigger_id")
		return nil, &res
	case s.now().Sub(t.issued) > s.opts.TriggerTTL:
		res := fail("expired_trigger_id")
		return nil, &res
	}
	return t, nil
}

func (s *Server) newHashLocked() string {
	return fmt.Sprintf("%d.%s", s.now().Unix(), randHex(4))
}

// parseView decodes and validates the "view" argument.
func (s *Server) parseView(r *apiRequest, wantType string) (map[string]any, json.RawMessage, *apiResult) {
	raw := r.params.Get("view")
	if raw == "" {
		res := fail("invalid_arguments", "missing required field: view")
		return nil, nil, &res
	}
	if len(raw) > maxViewBytes {
		res := fail("view_too_large")
		return nil, nil, &res
	}
	var view map[string]any
	if err := json.Unmarshal([]byte(raw), &view); err != nil {
		res := fail("invalid_arguments", "failed to parse view JSON [json-pointer:/view]")
		return nil, nil, &res
	}
	if errs := validateView(view, wantType); len(errs) > 0 {
		// Slack answers views.* Block Kit problems with invalid_arguments and
		// the explanation in response_metadata.messages.
		res := fail("invalid_arguments", errs...)
		return nil, nil, &res
	}
	blocks, _ := view["blocks"].([]any)
	return view, s.normalizeBlocks(blocks), nil
}

func textOf(v any) string {
	if m, ok := v.(map[string]any); ok {
		return asString(m["text"])
	}
	return ""
}

func (s *Server) viewJSONLocked(rec *viewRecord) map[string]any {
	b := rec.body
	get := func(k string) any {
		if v, ok := b[k]; ok {
			return v
		}
		return nil
	}
	var prev any
	if rec.prevID != "" {
		prev = rec.prevID
	}
	values := map[string]any{}
	for blockID, acts := range rec.submittedValues {
		values[blockID] = acts
	}
	return map[string]any{
		"id": rec.id, "team_id": s.opts.TeamID, "type": rec.typ,
		"title": get("title"), "close": get("close"), "submit": get("submit"),
		"blocks": rec.blocks, "private_metadata": asString(b["private_metadata"]),
		"callback_id": asString(b["callback_id"]), "external_id": rec.externalID,
		"state": map[string]any{"values": values}, "hash": rec.hash,
		"clear_on_close": b["clear_on_close"] == true, "notify_on_close": b["notify_on_close"] == true,
		"root_view_id": rec.rootID, "previous_view_id": prev, "app_id": s.opts.AppID,
		"app_installed_team_id": s.opts.TeamID, "bot_id": s.opts.BotID,
	}
}

func (s *Server) exportViewLocked(rec *viewRecord) View {
	errs := map[string]string{}
	for k, v := range rec.errors {
		errs[k] = v
	}
	return View{
		ID: rec.id, Type: rec.typ, User: rec.user, CallbackID: asString(rec.body["callback_id"]),
		PrivateMetadata: asString(rec.body["private_metadata"]), ExternalID: rec.externalID,
		Hash: rec.hash, RootViewID: rec.rootID, PreviousViewID: rec.prevID,
		Title: textOf(rec.body["title"]), Blocks: rec.blocks,
		JSON: mustJSON(s.viewJSONLocked(rec)), Errors: errs, Open: rec.open,
	}
}

func (s *Server) newViewLocked(user, typ string, body map[string]any, blocks json.RawMessage, rootID, prevID string) (*viewRecord, *apiResult) {
	ext := asString(body["external_id"])
	if ext != "" {
		if _, taken := s.externalIDs[ext]; taken {
			res := fail("duplicate_external_id")
			return nil, &res
		}
	}
	rec := &viewRecord{
		id: s.nextID("V"), typ: typ, user: user, body: body, blocks: blocks,
		hash: s.newHashLocked(), externalID: ext, prevID: prevID, open: true, updatedAt: s.now(),
	}
	rec.rootID = rootID
	if rootID == "" {
		rec.rootID = rec.id
	}
	if ext != "" {
		s.externalIDs[ext] = rec.id
	}
	s.views[rec.id] = rec
	return rec, nil
}

// views.open: https://api.slack.com/methods/views.open
func (s *Server) viewsOpen(r *apiRequest) apiResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	trig, bad := s.exchangeTriggerLocked(r.params.Get("trigger_id"))
	if bad != nil {
		return *bad
	}
	body, blocks, bad := s.parseView(r, "modal")
	if bad != nil {
		return *bad
	}
	rec, bad := s.newViewLocked(trig.user, "modal", body, blocks, "", "")
	if bad != nil {
		return *bad
	}
	trig.used = true
	s.closeStackLocked(trig.user)
	s.modalStacks[trig.user] = []string{rec.id}
	s.notifyLocked()
	return ok(map[string]any{"view": s.viewJSONLocked(rec)})
}

// views.push: https://api.slack.com/methods/views.push ("push_limit_reached
// ... Currently the limit is 3").
func (s *Server) viewsPush(r *apiRequest) apiResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	trig, bad := s.exchangeTriggerLocked(r.params.Get("trigger_id"))
	if bad != nil {
		return *bad
	}
	stack := s.modalStacks[trig.user]
	if len(stack) == 0 {
		return fail("not_found")
	}
	if len(stack) >= maxModalPushers {
		return fail("push_limit_reached")
	}
	body, blocks, bad := s.parseView(r, "modal")
	if bad != nil {
		return *bad
	}
	rec, bad := s.newViewLocked(trig.user, "modal", body, blocks, stack[0], stack[len(stack)-1])
	if bad != nil {
		return *bad
	}
	trig.used = true
	s.modalStacks[trig.user] = append(stack, rec.id)
	s.notifyLocked()
	return ok(map[string]any{"view": s.viewJSONLocked(rec)})
}

// views.update: https://api.slack.com/methods/views.update (not_found,
// hash_conflict, duplicate_external_id, view_too_large).
func (s *Server) viewsUpdate(r *apiRequest) apiResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ext := r.params.Get("view_id"), r.params.Get("external_id")
	if id == "" && ext == "" {
		return fail("invalid_arguments", "either view_id or external_id is required")
	}
	if id == "" {
		id = s.externalIDs[ext]
	}
	rec, found := s.views[id]
	if !found || !rec.open {
		return fail("not_found")
	}
	if h := r.params.Get("hash"); h != "" && h != rec.hash {
		return fail("hash_conflict")
	}
	body, blocks, bad := s.parseView(r, rec.typ)
	if bad != nil {
		return *bad
	}
	if newExt := asString(body["external_id"]); newExt != "" && newExt != rec.externalID {
		if _, taken := s.externalIDs[newExt]; taken {
			return fail("duplicate_external_id")
		}
		delete(s.externalIDs, rec.externalID)
		s.externalIDs[newExt] = rec.id
		rec.externalID = newExt
	}
	rec.body, rec.blocks, rec.hash, rec.updatedAt = body, blocks, s.newHashLocked(), s.now()
	rec.errors = nil
	s.notifyLocked()
	return ok(map[string]any{"view": s.viewJSONLocked(rec)})
}

// views.publish: https://api.slack.com/methods/views.publish (view type must
// be home; hash_conflict; view_too_large).
func (s *Server) viewsPublish(r *apiRequest) apiResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	user := r.params.Get("user_id")
	if _, known := s.users[user]; !known {
		return fail("invalid_arguments", "invalid `user_id`")
	}
	body, blocks, bad := s.parseView(r, "home")
	if bad != nil {
		return *bad
	}
	if id, has := s.homeByUser[user]; has {
		rec := s.views[id]
		if h := r.params.Get("hash"); h != "" && h != rec.hash {
			return fail("hash_conflict")
		}
		rec.body, rec.blocks, rec.hash, rec.updatedAt = body, blocks, s.newHashLocked(), s.now()
		s.notifyLocked()
		return ok(map[string]any{"view": s.viewJSONLocked(rec)})
	}
	rec, bad := s.newViewLocked(user, "home", body, blocks, "", "")
	if bad != nil {
		return *bad
	}
	s.homeByUser[user] = rec.id
	s.notifyLocked()
	return ok(map[string]any{"view": s.viewJSONLocked(rec)})
}

func (s *Server) closeStackLocked(user string) {
	for _, id := range s.modalStacks[user] {
		if rec, found := s.views[id]; found {
			rec.open = false
		}
	}
	delete(s.modalStacks, user)
}

// popViewLocked closes the top modal of user's stack.
func (s *Server) popViewLocked(user, viewID string) {
	stack := s.modalStacks[user]
	for i, id := range stack {
		if id == viewID {
			for _, closed := range stack[i:] {
				s.views[closed].open = false
			}
			stack = stack[:i]
			break
		}
	}
	if len(stack) == 0 {
		delete(s.modalStacks, user)
	} else {
		s.modalStacks[user] = stack
	}
}

// Views returns the modals currently open, for every user, root first.
func (s *Server) Views() []View {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []View
	for _, stack := range s.modalStacks {
		for _, id := range stack {
			out = append(out, s.exportViewLocked(s.views[id]))
		}
	}
	return out
}

// ModalStack returns user's open modals, root first.
func (s *Server) ModalStack(user string) []View {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []View
	for _, id := range s.modalStacks[user] {
		out = append(out, s.exportViewLocked(s.views[id]))
	}
	return out
}

// GetView returns any view (open or closed) by id.
func (s *Server) GetView(id string) (View, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, found := s.views[id]
	if !found {
		return View{}, false
	}
	return s.exportViewLocked(rec), true
}

// HomeView returns the Home tab last published for user.
func (s *Server) HomeView(user string) (View, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, found := s.homeByUser[user]
	if !found {
		return View{}, false
	}
	return s.exportViewLocked(s.views[id]), true
}

// CloseView emulates user closing a modal with its close button: the view
// and the ones pushed above it close. When the view was opened with
// notify_on_close, the bot receives a view_closed payload
// (https://api.slack.com/reference/interaction-payloads/views#view_closed)
// and the Response is returned; otherwise the Response is nil.
func (s *Server) CloseView(ctx context.Context, user, viewID string, opts ...SendOption) (*Response, error) {
	s.mu.Lock()
	rec, found := s.views[viewID]
	if !found || !rec.open || rec.user != user || rec.typ != "modal" {
		s.mu.Unlock()
		return nil, fmt.Errorf("slackfake: modal %q is not open for %s", viewID, user)
	}
	u := s.users[user]
	notify := rec.body["notify_on_close"] == true
	payload := map[string]any{
		"type": "view_closed", "user": s.userObjLocked(u), "api_app_id": s.opts.AppID,
		"token": s.opts.VerificationToken, "team": map[string]any{"id": s.opts.TeamID, "domain": s.opts.TeamDomain},
		"enterprise": nil, "is_enterprise_install": false,
		"view": s.viewJSONLocked(rec), "is_cleared": false,
	}
	s.popViewLocked(user, viewID)
	s.notifyLocked()
	s.mu.Unlock()
	if !notify {
		return nil, nil
	}
	return s.deliver(ctx, &delivery{kind: "interactive", payload: payload}, opts)
}
