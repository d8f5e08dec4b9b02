package slackfake

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// apiResult is what a method handler answers.
type apiResult struct {
	status  int
	body    map[string]any
	headers map[string]string
}

func ok(fields map[string]any) apiResult {
	if fields == nil {
		fields = map[string]any{}
	}
	fields["ok"] = true
	return apiResult{status: http.StatusOK, body: fields}
}

// fail answers {"ok":false,"error":code}. Slack answers errors with HTTP 200
// (https://api.slack.com/web#evaluating_responses); only rate limits use 429.
func fail(code string, messages ...string) apiResult {
	body := map[string]any{"ok": false, "error": code}
	if len(messages) > 0 {
		errs := make([]string, len(messages))
		meta := make([]string, len(messages))
		for i, m := range messages {
			errs[i] = m
			meta[i] = "[ERROR] " + m
		}
		body["errors"] = errs
		body["response_metadata"] = map[string]any{"messages": meta}
	}
	return apiResult{status: http.StatusOK, body: body}
}

// apiRequest is a parsed Web API call.
type apiRequest struct {
	method string
	params url.Values
	json   map[string]any
	token  string
	isJSON bool
}

type tokenKind int

const (
	botTokenOnly tokenKind = iota
	appTokenOnly
)

type methodSpec struct {
	token tokenKind
	// json reports whether the method documents application/json bodies.
	// Read methods (users.*, usergroups.*) only take form/query arguments;
	// a JSON body's fields are ignored, as Slack does.
	json    bool
	handler func(s *Server, r *apiRequest) apiResult
}

var methods map[string]methodSpec

func init() {
	methods = map[string]methodSpec{
		"auth.test":             {json: true, handler: (*Server).authTest},
		"chat.postMessage":      {json: true, handler: (*Server).chatPostMessage},
		"chat.postEphemeral":    {json: true, handler: (*Server).chatPostEphemeral},
		"chat.update":           {json: true, handler: (*Server).chatUpdate},
		"chat.getPermalink":     {handler: (*Server).chatGetPermalink},
		"conversations.open":    {json: true, handler: (*Server).conversationsOpen},
		"users.info":            {handler: (*Server).usersInfo},
		"users.lookupByEmail":   {handler: (*Server).usersLookupByEmail},
		"usergroups.list":       {handler: (*Server).usergroupsList},
		"usergroups.users.list": {handler: (*Server).usergroupsUsersList},
		"views.open":            {json: true, handler: (*Server).viewsOpen},
		"views.push":            {json: true, handler: (*Server).viewsPush},
		"views.update":          {json: true, handler: (*Server).viewsUpdate},
		"views.publish":         {json: true, handler: (*Server).viewsPublish},
		"apps.connections.open": {token: appTokenOnly, json: true, handler: (*Server).appsConnectionsOpen},
	}
}

func (s *Server) handleAPI(w http.ResponseWriter, r *http.Request) {
	method := strings.TrimPrefix(r.URL.Path, "/api/")
	req, perr := parseAPIRequest(method, r)
	var res apiResult
	spec, known := methods[method]
	switch {
	case perr != "":
		res = fail(perr)
	case !known:
		res = fail("unknown_method")
	default:
		res = s.dispatch(spec, req)
	}
	s.mu.Lock()
	s.calls = append(s.calls, Call{
		Method: method, Params: req.params, JSON: req.json, At: s.now(),
		HTTPStatus: res.status, OK: res.body["ok"] == true, Error: asString(res.body["error"]),
	})
	s.notifyLocked()
	s.mu.Unlock()
	s.logf("%s -> %d ok=%v %v", method, res.status, res.body["ok"], res.body["error"])

	for k, v := range res.headers {
		w.Header().Set(k, v)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(res.status)
	_ = json.NewEncoder(w).Encode(res.body)
}

func (s *Server) dispatch(spec methodSpec, req *apiRequest) apiResult {
	// Authentication first: https://api.slack.com/web#authentication
	switch {
	case req.token == "":
		return fail("not_authed")
	case spec.token == botTokenOnly && req.token == s.opts.AppToken,
		spec.token == appTokenOnly && req.token == s.opts.BotToken:
		return fail("not_allowed_token_type")
	case spec.token == botTokenOnly && req.token != s.opts.BotToken,
		spec.token == appTokenOnly && req.token != s.opts.AppToken:
		return fail("invalid_auth")
	}
	if res, limited := s.rateLimited(req.method); limited {
		return res
	}
	if req.isJSON && !spec.json {
		// Slack ignores JSON arguments for methods that do not accept JSON.
		req.params = url.Values{}
	}
	return spec.handler(s, req)
}

func (s *Server) rateLimited(method string) (apiResult, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if q := s.forced[method]; len(q) > 0 {
		s.forced[method] = q[1:]
		return ratelimited(q[0].retryAfter), true
	}
	return apiResult{}, false
}

func ratelimited(retryAfter time.Duration) apiResult {
	secs := int(math.Ceil(retryAfter.Seconds()))
	if secs < 1 {
		secs = 1
	}
	return apiResult{
		status:  http.StatusTooManyRequests,
		body:    map[string]any{"ok": false, "error": "ratelimited"},
		headers: map[string]string{"Retry-After": strconv.Itoa(secs)},
	}
}

func parseAPIRequest(method string, r *http.Request) (*apiRequest, string) {
	req := &apiRequest{method: method, params: url.Values{}}
	if auth := r.Header.Get("Authorization"); strings.HasPrefix(auth, "Bearer ") {
		req.token = strings.TrimSpace(strings.TrimPrefix(auth, "Bearer "))
	}
	for k, vs := range r.URL.Query() {
		req.params[k] = vs
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 8<<20))
	if err != nil {
		return req, "request_timeout"
	}
	if r.Method == http.MethodPost && len(body) > 0 {
		ct := r.Header.Get("Content-Type")
		if ct == "" {
			return req, "missing_post_type"
		}
		mt, params, err := mime.ParseMediaType(ct)
		if err != nil {
			return req, "invalid_post_type"
		}
		if cs := strings.ToLower(params["charset"]); cs != "" && cs != "utf-8" && cs != "iso-8859-1" {
			return req, "invalid_charset"
		}
		switch mt {
		case "application/json":
			req.isJSON = true
			var m map[string]any
			dec := json.NewDecoder(bytes.NewReader(body))
			dec.UseNumber()
			if err := dec.Decode(&m); err != nil {
				return req, "invalid_json"
			}
			delete(m, "token") // never keep credentials in recorded calls
			req.json = m
			for k, v := range m {
				switch t := v.(type) {
				case string:
					req.params.Set(k, t)
				case json.Number:
					req.params.Set(k, t.String())
				case bool:
					req.params.Set(k, strconv.FormatBool(t))
				case nil:
				default:
					req.params.Set(k, string(mustJSON(t)))
				}
			}
			// A token inside a JSON body is not accepted: JSON callers must use
			// the Authorization header (https://api.slack.com/web#posting_json).
			req.params.Del("token")
		case "application/x-www-form-urlencoded":
			form, err := url.ParseQuery(string(body))
			if err != nil {
				return req, "invalid_form_data"
			}
			for k, vs := range form {
				req.params[k] = vs
			}
		default:
			return req, "invalid_post_type"
		}
	}
	if req.token == "" && !req.isJSON {
		req.token = req.params.Get("token")
	}
	req.params.Del("token") // never keep credentials in recorded calls
	return req, ""
}

func asString(v any) string {
	s, _ := v.(string)
	return s
}

func boolParam(v string) bool {
	switch strings.ToLower(v) {
	case "1", "true", "yes":
		return true
	}
	return false
}

// ---- auth / users / groups / conversations ----

func (s *Server) authTest(r *apiRequest) apiResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	return ok(map[string]any{
		"url":                   "https://" + s.opts.TeamDomain + ".slack.com/",
		"team":                  s.opts.TeamDomain,
		"user":                  s.users[s.opts.BotUserID].Name,
		"team_id":               s.opts.TeamID,
		"user_id":               s.opts.BotUserID,
		"bot_id":                s.opts.BotID,
		"is_enterprise_install": false,
	})
}

func (s *Server) userJSON(u *User) map[string]any {
	return map[string]any{
		"id": u.ID, "team_id": s.opts.TeamID, "name": u.Name, "real_name": u.RealName,
		"deleted": u.Deleted, "is_bot": u.IsBot, "tz": u.TZ,
		"profile": map[string]any{
			"real_name": u.RealName, "display_name": u.Name, "email": u.Email, "team": s.opts.TeamID,
		},
	}
}

// users.info: https://api.slack.com/methods/users.info (user_not_found).
func (s *Server) usersInfo(r *apiRequest) apiResult {
	id := r.params.Get("user")
	if id == "" {
		return fail("user_not_found")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	u, found := s.users[id]
	if !found {
		return fail("user_not_found")
	}
	return ok(map[string]any{"user": s.userJSON(u)})
}

// users.lookupByEmail: https://api.slack.com/methods/users.lookupByEmail (users_not_found).
func (s *Server) usersLookupByEmail(r *apiRequest) apiResult {
	email := strings.ToLower(r.params.Get("email"))
	if email == "" {
		return fail("invalid_arguments", "missing required field: email")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	u, found := s.usersEmail[email]
	if !found {
		return fail("users_not_found")
	}
	return ok(map[string]any{"user": s.userJSON(u)})
}

func (s *Server) groupJSON(g *UserGroup, includeUsers bool) map[string]any {
	m := map[string]any{
		"id": g.ID, "team_id": s.opts.TeamID, "is_usergroup": true, "name": g.Name,
		"handle": g.Handle, "description": "", "is_external": false,
		"date_delete": 0, "user_count": len(g.Members),
		"prefs": map[string]any{"channels": []string{}, "groups": []string{}},
	}
	if g.Disabled {
		m["date_delete"] = 1
	}
	if includeUsers {
		m["users"] = append([]string{}, g.Members...)
	}
	return m
}

// usergroups.list: https://api.slack.com/methods/usergroups.list
func (s *Server) usergroupsList(r *apiRequest) apiResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.opts.FreePlan {
		return fail("plan_upgrade_required")
	}
	includeDisabled := boolParam(r.params.Get("include_disabled"))
	includeUsers := boolParam(r.params.Get("include_users"))
	out := []any{}
	for _, g := range s.groups {
		if g.Disabled && !includeDisabled {
			continue
		}
		out = append(out, s.groupJSON(g, includeUsers))
	}
	return ok(map[string]any{"usergroups": out})
}

// usergroups.users.list: https://api.slack.com/methods/usergroups.users.list
// (no_such_subteam, plan_upgrade_required).
func (s *Server) usergroupsUsersList(r *apiRequest) apiResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.opts.FreePlan {
		return fail("plan_upgrade_required")
	}
	id := r.params.Get("usergroup")
	if id == "" {
		return fail("invalid_arguments", "missing required field: usergroup")
	}
	for _, g := range s.groups {
		if g.ID == id {
			if g.Disabled && !boolParam(r.params.Get("include_disabled")) {
				return fail("no_such_subteam")
			}
			return ok(map[string]any{"users": append([]string{}, g.Members...)})
		}
	}
	return fail("no_such_subteam")
}

// conversations.open: https://api.slack.com/methods/conversations.open
// Only 1:1 DMs are emulated; the id is stable per user.
func (s *Server) conversationsOpen(r *apiRequest) apiResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ch := r.params.Get("channel"); ch != "" {
		c, found := s.channels[ch]
		if !found {
			return fail("channel_not_found")
		}
		return ok(map[string]any{"channel": map[string]any{"id": c.ID}})
	}
	users := strings.Split(r.params.Get("users"), ",")
	var ids []string
	for _, u := range users {
		if u = strings.TrimSpace(u); u != "" {
			ids = append(ids, u)
		}
	}
	if len(ids) == 0 {
		return fail("users_list_not_supplied")
	}
	if len(ids) > 8 {
		return fail("too_many_users")
	}
	if len(ids) > 1 {
		return fail("invalid_arguments", "slackfake emulates 1:1 DMs only")
	}
	u, found := s.users[ids[0]]
	if !found {
		return fail("user_not_found")
	}
	if u.Deleted {
		return fail("user_disabled")
	}
	_, existed := s.dmByUser[u.ID]
	id := s.dmChannelLocked(u.ID)
	s.notifyLocked()
	ch := map[string]any{"id": id}
	if boolParam(r.params.Get("return_im")) {
		ch = map[string]any{"id": id, "is_im": true, "user": u.ID, "created": s.now().Unix(), "is_open": true}
	}
	res := map[string]any{"channel": ch}
	if existed {
		res["no_op"] = true
		res["already_open"] = true
	}
	return ok(res)
}

func (s *Server) appsConnectionsOpen(r *apiRequest) apiResult {
	u, _ := url.Parse(s.hs.URL)
	ticket := s.sock.newTicket()
	return ok(map[string]any{"url": fmt.Sprintf("ws://%s/socket?ticket=%s&app_id=%s", u.Host, ticket, s.opts.AppID)})
}
