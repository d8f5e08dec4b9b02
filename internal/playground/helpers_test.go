package playground

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/jitbot/jitbot/policy"
	"github.com/jitbot/jitbot/store/bolt"
)

// startPlayground runs a playground on free ports with the example policy (its webhook receiver moved to a
// free port, so a running `make run` never collides) and the embedded store in a temporary directory.
func startPlayground(t *testing.T) *Playground {
	t.Helper()
	raw, err := os.ReadFile("../../examples/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hookAddr := ln.Addr().String()
	ln.Close()
	src := strings.NewReplacer("127.0.0.1:9099", hookAddr, "127.0.0.1:9098", freeAddr(t)).Replace(string(raw))
	pol, err := policy.Parse("examples/policy.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	st, err := bolt.Open(filepath.Join(t.TempDir(), "jitbot.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	pg, err := Start(Options{Policy: pol, PolicyFile: "examples/policy.yaml", Store: st, Listen: "127.0.0.1:0",
		Logger: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)})
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- pg.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("playground stopped with %v", err)
		}
		st.Close()
	})
	// Wait until it answers.
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(pg.URL() + "/healthz")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("playground never answered: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return pg
}

// freeAddr returns a loopback address with a port that was free a moment ago (for the local OIDC issuer).
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// client drives the playground's JSON API as the page does.
type client struct {
	t    *testing.T
	base string
}

func (c *client) state(user string) State {
	c.t.Helper()
	resp, err := http.Get(c.base + "/api/state?user=" + user)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	var st State
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		c.t.Fatal(err)
	}
	return st
}

func (c *client) post(path string, body any) ActionResult {
	c.t.Helper()
	b, _ := json.Marshal(body)
	resp, err := http.Post(c.base+path, "application/json", bytes.NewReader(b))
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	var res ActionResult
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		c.t.Fatal(err)
	}
	return res
}

func (c *client) mustPost(path string, body any) ActionResult {
	c.t.Helper()
	res := c.post(path, body)
	if !res.OK || len(res.Problems) > 0 {
		c.t.Fatalf("%s %+v: %+v", path, body, res)
	}
	return res
}

// waitFor polls the state of user until cond holds (a hang guard of 30 s, not a speed check).
func (c *client) waitFor(user, what string, cond func(State) bool) State {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st := c.state(user)
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			js, _ := json.MarshalIndent(st, "", " ")
			c.t.Fatalf("%s never happened for %s; last state:\n%s", what, user, js)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (s State) channel(name string) ChannelView {
	for _, c := range s.Channels {
		if c.Name == name {
			return c
		}
	}
	return ChannelView{}
}

// find returns the first top-level message of a channel view whose rendered text contains all of parts.
func (cv ChannelView) find(parts ...string) (MessageView, bool) {
	for _, m := range cv.Messages {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(m.Plain, p)
		}
		if ok {
			return m, true
		}
	}
	return MessageView{}, false
}

func (m MessageView) button(actionID string) (ButtonView, bool) {
	for _, b := range m.Buttons {
		if b.ActionID == actionID {
			return b, true
		}
	}
	return ButtonView{}, false
}
