package bot_test

import (
	"context"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/slack-go/slack"

	"github.com/jitbot/jitbot/approvals"
	"github.com/jitbot/jitbot/bot"
	"github.com/jitbot/jitbot/grants"
	"github.com/jitbot/jitbot/policy"
	"github.com/jitbot/jitbot/store"
	"github.com/jitbot/jitbot/store/bolt"
)

// The bot depends on interfaces it owns; the engine's types are what jitbot passes them.
var (
	_ bot.Approvals = (*approvals.Service)(nil)
	_ bot.Grants    = (*grants.Manager)(nil)
)

// The bot reads the store and writes no record: requests and grants change only through the engine.
func TestBotStoreHasNoWrites(t *testing.T) {
	st := reflect.TypeFor[bot.Store]()
	for i := range st.NumMethod() {
		switch m := st.Method(i).Name; m {
		case "GetRequest", "GetGrant", "ListRequests", "ListGrants", "MarkSeen":
		default:
			t.Errorf("bot.Store has %s; the bot must not write records", m)
		}
	}
}

// readOnly is a store the notifier can only read: it has no Commit to call.
type readOnly struct{ bot.Store }

// postOnly is a Slack that records the messages posted.
type postOnly struct {
	bot.SlackAPI
	mu    sync.Mutex
	posts []string
}

func (p *postOnly) PostMessageContext(_ context.Context, ch string, _ ...slack.MsgOption) (string, string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.posts = append(p.posts, ch)
	return ch, "1700000000.000100", nil
}

func (p *postOnly) UpdateMessageContext(_ context.Context, ch, ts string, _ ...slack.MsgOption) (string, string, string, error) {
	return ch, ts, "", nil
}

// The notifier posts the approval message and has the engine record where it is.
func TestNotifierRecordsMessagesThroughTheEngine(t *testing.T) {
	ctx := context.Background()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "jitbot.db"), bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	pol, err := policy.Parse("records.yaml", []byte(`version: 1
providers:
  fake:
    type: webhook
    principal_from: slack_user_id
    webhook: {url: "http://127.0.0.1:1/unused", secret_env: UNUSED_SECRET}
roles:
  db:
    provider: fake
    target: {db: main}
    approval_channel: C0APPROVALS
    requesters: {users: [U0ALICE]}
    approvers: {users: [U0BOB]}
`))
	if err != nil {
		t.Fatal(err)
	}
	svc, err := approvals.New(approvals.Options{Store: st, Policy: pol})
	if err != nil {
		t.Fatal(err)
	}
	req, err := svc.Create(ctx, approvals.NewRequest{Requester: "U0ALICE", Role: "db", Reason: "INC-1"})
	if err != nil {
		t.Fatal(err)
	}
	api := &postOnly{}
	notesCtx, stop := context.WithCancel(ctx)
	n := bot.NewNotifier(notesCtx, bot.NotifierOptions{API: api, Store: readOnly{st}, Refs: svc, Policy: pol, Logger: zerolog.Nop(), Now: time.Now})
	n.Publish(ctx, store.AuditEvent{Type: store.EventRequested, RequestID: req.ID, Role: "db", Actor: "U0ALICE"})
	n.Wait()
	stop()
	got, err := st.GetRequest(ctx, req.ID)
	if err != nil {
		t.Fatal(err)
	}
	if ref, ok := approvals.MessageRefOf(got); !ok || ref != (approvals.MessageRef{Channel: "C0APPROVALS", TS: "1700000000.000100"}) {
		t.Fatalf("after posting to %v: MessageRefOf = %+v, %v", api.posts, ref, ok)
	}
}
