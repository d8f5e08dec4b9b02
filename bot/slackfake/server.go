package slackfake

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// User is a workspace member known to the emulator.
type User struct {
	ID       string // "U..." (required)
	Name     string // handle, sent as user_name / username
	RealName string
	Email    string // needed for users.lookupByEmail
	IsBot    bool
	Deleted  bool
	TZ       string // IANA zone; defaults to "UTC"
}

// UserGroup is a Slack user group (a "subteam", id "S...").
type UserGroup struct {
	ID       string // "S..."
	Handle   string // without the leading @
	Name     string
	Members  []string // user ids
	Disabled bool
}

// Channel is a conversation known to the emulator. DMs ("D...") are created
// on demand by conversations.open and need not be listed.
type Channel struct {
	ID        string // "C..." or "G..."
	Name      string // without '#'
	IsPrivate bool
	// Members lists the users in the channel. Nil means "every user", which
	// is the convenient default; an empty non-nil slice means nobody.
	Members []string
	// BotNotMember makes chat.postMessage / postEphemeral / update answer
	// not_in_channel, as Slack does for a private channel the bot was not
	// invited to.
	BotNotMember bool
}

// ChannelRate emulates chat.postMessage's special rate limit: "1 message per
// second per channel, short bursts tolerated". It is a token bucket holding
// Burst tokens, refilled one token per Interval.
type ChannelRate struct {
	Interval time.Duration // default 1s
	Burst    int           // default 3
}

// Options configures a Server. Every field has a usable default.
type Options struct {
	BotToken      string // default "xoxb-test-bot-token"
	AppToken      string // default "xapp-1-test-app-token" (Socket Mode)
	SigningSecret string // default "test-signing-secret"
	TeamID        string // default "T0TEST"
	TeamDomain    string // default "jitbot-test"
	AppID         string // default "A0TEST"
	BotUserID     string // default "U0BOT"
	BotID         string // default "B0BOT"
	// VerificationToken is the deprecated "token" field Slack still puts in
	// payloads. Bots must not rely on it. Default "deprecated-verification-token".
	VerificationToken string

	Users      []User
	UserGroups []UserGroup
	Channels   []Channel
	// FreePlan emulates a workspace on the free plan: every usergroups.*
	// method answers plan_upgrade_required ("This workspace does not have
	// access to User Groups, as that feature is only available on Standard
	// and above plans.", usergroups.list / usergroups.users.list reference).
	FreePlan bool

	// Now is the emulator's clock (trigger expiry, response_url expiry, ts
	// values, request timestamps, rate buckets). Default time.Now.
	Now func() time.Time

	// PostMessageRate, when set, makes chat.postMessage answer 429 with
	// Retry-After once a channel's bucket is empty.
	PostMessageRate *ChannelRate

	// AckTimeout is how long Slack waits for the bot's HTTP answer or Socket
	// Mode ack (3 s in production). Default 3s.
	AckTimeout time.Duration
	// TriggerTTL is how long a trigger_id can be exchanged (3 s). Default 3s.
	TriggerTTL time.Duration
	// SocketRetryDelay is how long an un-acked Socket Mode envelope waits
	// before redelivery (Slack: about 3 s). Default 3s.
	SocketRetryDelay time.Duration
	// SocketMaxRetries bounds redeliveries of one envelope. Default 3.
	SocketMaxRetries int
	// SocketPingInterval is how often the server pings the WebSocket (slack-go
	// drops the connection after 30 s without a ping). Default 5s.
	SocketPingInterval time.Duration

	// EventRetries, when positive, makes HTTP-mode Events API deliveries
	// (OpenHome, SendEvent) retry like Slack when the bot does not answer 2xx
	// within AckTimeout: up to EventRetries more attempts (Slack: 3) carrying
	// X-Slack-Retry-Num and X-Slack-Retry-Reason, EventRetryDelay apart (Slack
	// waits about 0 s, 1 min, 5 min; the default here is 0). The attempts are
	// in Response.Retries.
	EventRetries    int
	EventRetryDelay time.Duration

	// Logf, when set, receives a line for every Web API call and every request
	// sent to the bot (pass t.Logf).
	Logf func(format string, args ...any)
}

func (o *Options) defaults() {
	def := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	def(&o.BotToken, "xoxb-test-bot-token")
	def(&o.AppToken, "xapp-1-test-app-token")
	def(&o.SigningSecret, "test-signing-secret")
	def(&o.TeamID, "T0TEST")
	def(&o.TeamDomain, "jitbot-test")
	def(&o.AppID, "A0TEST")
	def(&o.BotUserID, "U0BOT")
	def(&o.BotID, "B0BOT")
	def(&o.VerificationToken, "deprecated-verification-token")
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.AckTimeout <= 0 {
		o.AckTimeout = 3 * time.Second
	}
	if o.TriggerTTL <= 0 {
		o.TriggerTTL = 3 * time.Second
	}
	if o.SocketRetryDelay <= 0 {
		o.SocketRetryDelay = 3 * time.Second
	}
	if o.SocketMaxRetries <= 0 {
		o.SocketMaxRetries = 3
	}
	if o.SocketPingInterval <= 0 {
		o.SocketPingInterval = 5 * time.Second
	}
	if o.PostMessageRate != nil {
		if o.PostMessageRate.Interval <= 0 {
			o.PostMessageRate.Interval = time.Second
		}
		if o.PostMessageRate.Burst <= 0 {
			o.PostMessageRate.Burst = 3
		}
	}
}

// Mode selects how the emulator delivers slash commands, interactions and
// events to the bot.
type Mode int

const (
	// ModeHTTP sends signed HTTP requests to the URLs given to SetRequestURLs.
	ModeHTTP Mode = iota
	// ModeSocket sends envelopes over the bot's Socket Mode connection.
	ModeSocket
)

// Call is one recorded Web API call.
type Call struct {
	Method string
	// Params holds the arguments. For form posts (and GET query strings) they
	// are the form values; for JSON bodies every top-level field is
	// present, strings as is and other values JSON-encoded, so
	// Params.Get("view") or Params.Get("blocks") is JSON text either way.
	Params url.Values
	// JSON is the decoded body when the call was sent as application/json.
	JSON map[string]any
	At   time.Time
	// HTTPStatus, OK and Error describe the emulator's answer.
	HTTPStatus int
	OK         bool
	Error      string
}

// Server is the emulated Slack. Create it with New; it is safe for
// concurrent use.
type Server struct {
	opts Options
	hs   *httptest.Server

	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every state change

	calls      []Call
	users      map[string]*User
	usersEmail map[string]*User
	groups     []*UserGroup
	channels   map[string]*Channel // includes DMs
	dmByUser   map[string]string   // user id -> D id
	messages   map[string][]*Message
	ephemerals []*Ephemeral
	lastTS     int64 // micros

	triggers    map[string]*trigger
	views       map[string]*viewRecord
	modalStacks map[string][]string // user -> view ids, root first
	homeByUser  map[string]string   // user -> view id
	externalIDs map[string]string   // external_id -> view id

	forced  map[string][]forcedLimit
	buckets map[string]*bucket

	responseURLs  map[string]*responseURL
	responsePosts []ResponseURLPost

	requestURLs requestURLs
	mode        Mode
	seq         int64
	eventSeq    int64

	sock   *socketHub
	closed atomic.Bool
}

type requestURLs struct{ commands, interactions, events string }

type forcedLimit struct{ retryAfter time.Duration }

type bucket struct {
	tokens float64
	last   time.Time
}

// New starts an emulator on a local httptest server.
func New(opts Options) *Server {
	opts.defaults()
	s := &Server{
		opts:         opts,
		changed:      make(chan struct{}),
		users:        map[string]*User{},
		usersEmail:   map[string]*User{},
		channels:     map[string]*Channel{},
		dmByUser:     map[string]string{},
		messages:     map[string][]*Message{},
		triggers:     map[string]*trigger{},
		views:        map[string]*viewRecord{},
		modalStacks:  map[string][]string{},
		homeByUser:   map[string]string{},
		externalIDs:  map[string]string{},
		forced:       map[string][]forcedLimit{},
		buckets:      map[string]*bucket{},
		responseURLs: map[string]*responseURL{},
	}
	for i := range opts.Users {
		u := opts.Users[i]
		if u.TZ == "" {
			u.TZ = "UTC"
		}
		s.users[u.ID] = &u
		if u.Email != "" {
			s.usersEmail[strings.ToLower(u.Email)] = &u
		}
	}
	if _, ok := s.users[opts.BotUserID]; !ok {
		s.users[opts.BotUserID] = &User{ID: opts.BotUserID, Name: "jitbot", RealName: "jitbot", IsBot: true, TZ: "UTC"}
	}
	for i := range opts.UserGroups {
		g := opts.UserGroups[i]
		g.Members = append([]string(nil), g.Members...)
		s.groups = append(s.groups, &g)
	}
	for i := range opts.Channels {
		c := opts.Channels[i]
		s.channels[c.ID] = &c
	}
	s.sock = newSocketHub(s)
	mux := http.NewServeMux()
	mux.HandleFunc("/api/", s.handleAPI)
	mux.HandleFunc("/response/", s.handleResponseURL)
	mux.HandleFunc("/socket", s.handleSocket)
	s.hs = httptest.NewServer(mux)
	return s
}

// URL is the base URL of the emulator, without a trailing slash.
func (s *Server) URL() string { return s.hs.URL }

// APIURL is the Web API base URL to pass to slack.OptionAPIURL (the trailing
// slash matters).
func (s *Server) APIURL() string { return s.hs.URL + "/api/" }

// BotToken is the bot token (xoxb-...) the Web API accepts.
func (s *Server) BotToken() string { return s.opts.BotToken }

// AppToken is the app-level token (xapp-...) apps.connections.open accepts.
func (s *Server) AppToken() string { return s.opts.AppToken }

// SigningSecret is the secret the emulator signs its requests to the bot with.
func (s *Server) SigningSecret() string { return s.opts.SigningSecret }

// TeamID is the workspace id.
func (s *Server) TeamID() string { return s.opts.TeamID }

// BotUserID is the bot's user id (what auth.test answers as user_id).
func (s *Server) BotUserID() string { return s.opts.BotUserID }

// Close stops the Socket Mode connections and the HTTP server.
func (s *Server) Close() {
	s.closed.Store(true)
	s.sock.close()
	s.hs.CloseClientConnections()
	s.hs.Close()
}

// SetRequestURLs tells the emulator where the bot receives slash commands,
// interactivity payloads and Events API callbacks in HTTP mode. An empty
// string leaves that URL unchanged.
func (s *Server) SetRequestURLs(commands, interactions, events string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if commands != "" {
		s.requestURLs.commands = commands
	}
	if interactions != "" {
		s.requestURLs.interactions = interactions
	}
	if events != "" {
		s.requestURLs.events = events
	}
}

// SetMode selects HTTP or Socket Mode delivery for SlashCommand, ClickButton,
// SubmitView and OpenHome.
func (s *Server) SetMode(m Mode) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mode = m
}

// RateLimit makes the next n calls of method answer HTTP 429 with a
// Retry-After header (whole seconds, rounded up, at least 1) and
// {"ok":false,"error":"ratelimited"}, as documented on
// https://api.slack.com/apis/rate-limits.
func (s *Server) RateLimit(method string, n int, retryAfter time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := 0; i < n; i++ {
		s.forced[method] = append(s.forced[method], forcedLimit{retryAfter: retryAfter})
	}
}

// AddUser adds or replaces a user at run time.
func (s *Server) AddUser(u User) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if u.TZ == "" {
		u.TZ = "UTC"
	}
	s.users[u.ID] = &u
	if u.Email != "" {
		s.usersEmail[strings.ToLower(u.Email)] = &u
	}
	s.notifyLocked()
}

// SetUserGroupMembers replaces a user group's members (creating the group
// when it is unknown).
func (s *Server) SetUserGroupMembers(groupID string, members []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, g := range s.groups {
		if g.ID == groupID {
			g.Members = append([]string(nil), members...)
			s.notifyLocked()
			return
		}
	}
	s.groups = append(s.groups, &UserGroup{ID: groupID, Handle: strings.ToLower(groupID), Name: groupID, Members: append([]string(nil), members...)})
	s.notifyLocked()
}

// SetFreePlan switches usergroups.* between working and answering
// plan_upgrade_required.
func (s *Server) SetFreePlan(free bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opts.FreePlan = free
}

// ---- internals ----

func (s *Server) now() time.Time { return s.opts.Now() }

func (s *Server) logf(format string, args ...any) {
	if s.opts.Logf != nil && !s.closed.Load() {
		s.opts.Logf("slackfake: "+format, args...)
	}
}

// notifyLocked wakes every waiter. s.mu must be held.
func (s *Server) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *Server) nextID(prefix string) string {
	s.seq++
	return fmt.Sprintf("%s%07X", prefix, s.seq)
}

// nextTSLocked returns a unique "seconds.micros" timestamp, strictly
// increasing across the whole workspace (hence per channel too).
func (s *Server) nextTSLocked() string {
	us := s.now().UnixMicro()
	if us <= s.lastTS {
		us = s.lastTS + 1
	}
	s.lastTS = us
	return fmt.Sprintf("%d.%06d", us/1e6, us%1e6)
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (s *Server) channelMemberLocked(c *Channel, user string) bool {
	if c.Members == nil {
		_, ok := s.users[user]
		return ok
	}
	for _, m := range c.Members {
		if m == user {
			return true
		}
	}
	return false
}

// dmChannelLocked returns (creating it if needed) the bot's DM with user.
func (s *Server) dmChannelLocked(user string) string {
	if id, ok := s.dmByUser[user]; ok {
		return id
	}
	id := "D" + strings.TrimPrefix(strings.TrimPrefix(user, "U"), "W")
	if _, taken := s.channels[id]; taken {
		id = s.nextID("D")
	}
	s.dmByUser[user] = id
	s.channels[id] = &Channel{ID: id, Name: user, IsPrivate: true, Members: []string{user}}
	return id
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
