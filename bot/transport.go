package bot

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/rs/zerolog"
	"github.com/slack-go/slack"
	"github.com/slack-go/slack/slackevents"
	"github.com/slack-go/slack/socketmode"
)

// MaxBodyBytes bounds a request from Slack; real payloads (a view submission with long text fields included)
// stay far below it.
const MaxBodyBytes = 256 << 10

// replayWindow covers Slack's 5-minute signature window with margin: a signature seen again inside it is a
// replay.
const replayWindow = 6 * time.Minute

// HTTPHandler serves Slack's HTTP mode: POST /slack/commands, /slack/interactions and /slack/events. Each
// request is verified before anything is parsed: a missing, forged or stale signature gets 401, an oversized
// body 413, a replayed request 401; none of them changes anything.
func (b *Bot) HTTPHandler(signingSecret string) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST /slack/commands", b.verified(signingSecret, false, b.serveCommand))
	mux.Handle("POST /slack/interactions", b.verified(signingSecret, false, b.serveInteraction))
	mux.Handle("POST /slack/events", b.verified(signingSecret, true, b.serveEvent))
	return mux
}

// verified checks the signature and refuses replays. retries is set for the Events API: Slack retries a
// failed delivery with the same body and X-Slack-Retry-Num, possibly within the same second (so with the very
// same signature); such a retry is a new delivery, and event_id deduplication makes it (and any replay
// carrying a retry header) harmless.
func (b *Bot) verified(secret string, retries bool, next func(w http.ResponseWriter, r *http.Request, body []byte)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		log := zerolog.Ctx(r.Context())
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
				return
			}
			http.Error(w, "could not read the request", http.StatusBadRequest)
			return
		}
		sv, err := slack.NewSecretsVerifier(r.Header, secret)
		if err == nil {
			_, _ = sv.Write(body)
			err = sv.Ensure()
		}
		if err != nil {
			log.Warn().Str("path", r.URL.Path).Str("reason", verifyReason(err)).Msg("rejected an unverified Slack request")
			http.Error(w, "invalid Slack signature", http.StatusUnauthorized)
			return
		}
		key := "slack-sig:" + r.Header.Get("X-Slack-Signature")
		if n := r.Header.Get("X-Slack-Retry-Num"); retries && n != "" {
			key += ":retry:" + n
		}
		first, err := b.opts.Store.MarkSeen(r.Context(), key, replayWindow)
		if err != nil {
			log.Error().Err(err).Msg("could not check for a replayed request; refusing it")
			http.Error(w, "try again", http.StatusServiceUnavailable)
			return
		}
		if !first {
			log.Warn().Str("path", r.URL.Path).Msg("rejected a replayed Slack request")
			http.Error(w, "replayed request", http.StatusUnauthorized)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		next(w, r, body)
	})
}

func verifyReason(err error) string {
	switch {
	case errors.Is(err, slack.ErrMissingHeaders):
		return "missing signature headers"
	case errors.Is(err, slack.ErrExpiredTimestamp):
		return "stale timestamp"
	case errors.Is(err, slack.ErrInvalidSignature):
		return "signature mismatch"
	}
	return "malformed signature headers"
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func (b *Bot) serveCommand(w http.ResponseWriter, r *http.Request, _ []byte) {
	sc, err := slack.SlashCommandParse(r)
	if err != nil {
		http.Error(w, "malformed slash command", http.StatusBadRequest)
		return
	}
	if msg := b.Command(r.Context(), sc); msg != nil {
		writeJSON(w, msg)
	}
}

func (b *Bot) serveInteraction(w http.ResponseWriter, r *http.Request, _ []byte) {
	cb, err := slack.InteractionCallbackParse(r)
	if err != nil {
		http.Error(w, "malformed interaction payload", http.StatusBadRequest)
		return
	}
	if resp := b.Interaction(r.Context(), cb); resp != nil {
		writeJSON(w, resp)
	}
}

func (b *Bot) serveEvent(w http.ResponseWriter, r *http.Request, body []byte) {
	ev, err := slackevents.ParseEvent(json.RawMessage(body), slackevents.OptionNoVerifyToken())
	if err != nil {
		http.Error(w, "malformed event", http.StatusBadRequest)
		return
	}
	if ev.Type == slackevents.URLVerification {
		var ch slackevents.ChallengeResponse
		if err := json.Unmarshal(body, &ch); err != nil {
			http.Error(w, "malformed challenge", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte(ch.Challenge))
		return
	}
	b.event(r.Context(), ev)
}

// event handles an Events API callback once per event_id (Slack redelivers until it gets a 2xx).
func (b *Bot) event(ctx context.Context, ev slackevents.EventsAPIEvent) {
	cb, ok := ev.Data.(*slackevents.EventsAPICallbackEvent)
	if !ok {
		return
	}
	if first, err := b.opts.Store.MarkSeen(ctx, "slack-event:"+cb.EventID, time.Hour); err != nil || !first {
		return
	}
	if home, ok := ev.InnerEvent.Data.(*slackevents.AppHomeOpenedEvent); ok && home.Tab != "messages" {
		b.AppHomeOpened(ctx, home.User)
	}
}

// RunSocketMode serves Slack over Socket Mode until ctx ends, with the same handlers as HTTP mode. api must
// carry the app-level token (slack.OptionAppLevelToken).
func (b *Bot) RunSocketMode(ctx context.Context, api *slack.Client, opts ...socketmode.Option) error {
	client := socketmode.New(api, opts...)
	errc := make(chan error, 1)
	go func() { errc <- client.RunContext(ctx) }()
	log := zerolog.Ctx(ctx)
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errc:
			if ctx.Err() != nil {
				return nil
			}
			return err
		case evt := <-client.Events:
			switch evt.Type {
			case socketmode.EventTypeSlashCommand:
				sc, ok := evt.Data.(slack.SlashCommand)
				if !ok || evt.Request == nil {
					continue
				}
				if msg := b.Command(ctx, sc); msg != nil {
					_ = client.Ack(*evt.Request, msg)
				} else {
					_ = client.Ack(*evt.Request)
				}
			case socketmode.EventTypeInteractive:
				cb, ok := evt.Data.(slack.InteractionCallback)
				if !ok || evt.Request == nil {
					continue
				}
				if resp := b.Interaction(ctx, cb); resp != nil {
					_ = client.Ack(*evt.Request, resp)
				} else {
					_ = client.Ack(*evt.Request)
				}
			case socketmode.EventTypeEventsAPI:
				ev, ok := evt.Data.(slackevents.EventsAPIEvent)
				if evt.Request != nil {
					_ = client.Ack(*evt.Request)
				}
				if ok {
					b.event(ctx, ev)
				}
			case socketmode.EventTypeInvalidAuth:
				return errors.New("bot: Slack refused the app-level token (SLACK_APP_TOKEN)")
			case socketmode.EventTypeConnectionError:
				log.Warn().Msg("socket mode connection error; reconnecting")
			}
		}
	}
}
