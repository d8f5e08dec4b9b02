package bot

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/rs/zerolog"
	"github.com/slack-go/slack"
	"github.com/slack-go/slack/slackevents"
	"github.com/slack-go/slack/socketmode"
)

// MaxBodyBytes bounds a request from Slack; real payloads (a view submission with long text fields included)
// stay far below it.
const MaxBodyBytes = 256 << 10

// replayMargin keeps a request's replay record past the end of its signature's 5-minute window, to cover
// clock differences between the replicas sharing the store (their verifiers use their own clocks).
const replayMargin = time.Minute

// signatureWindow is how far from now slack-go accepts a request timestamp, in either direction.
const signatureWindow = 5 * time.Minute

// maxEventRetry is the highest X-Slack-Retry-Num taken as a retry; Slack retries an event 3 times.
const maxEventRetry = 10

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
		key, ttl := replayKey(r.Header, body, time.Now())
		if n, ok := retryNum(r.Header); retries && ok {
			key += ":retry:" + strconv.Itoa(n)
		}
		first, err := b.opts.Store.MarkSeen(r.Context(), key, ttl)
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

// replayKey names a verified request by what its signature covers, never by how the signature header is
// written: slack-go accepts the hex in any case and reads only the first X-Slack-Signature, so keying on the
// header would let one signed request through once per spelling. The key is the timestamp (as a number) and
// the SHA-256 of the raw body; it is kept until the signature can no longer verify anywhere (the timestamp
// may lie up to 5 minutes in the future too), plus a margin for clock differences between replicas.
func replayKey(h http.Header, body []byte, now time.Time) (string, time.Duration) {
	ts, _ := strconv.ParseInt(h.Get("X-Slack-Request-Timestamp"), 10, 64) // verified: it parses
	sum := sha256.Sum256(body)
	ttl := time.Unix(ts, 0).Add(signatureWindow + replayMargin).Sub(now)
	return "slack-req:" + strconv.FormatInt(ts, 10) + ":" + hex.EncodeToString(sum[:]), max(ttl, replayMargin)
}

// retryNum reads X-Slack-Retry-Num as a number, so that "1", "01" and "+1" are one retry, not three keys.
func retryNum(h http.Header) (int, bool) {
	v := h.Get("X-Slack-Retry-Num")
	if v == "" {
		return 0, false
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > maxEventRetry {
		return 0, false
	}
	return n, true
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
	if cb.EventID == "" {
		zerolog.Ctx(ctx).Warn().Msg("ignored an event without an event_id")
		return
	}
	if first, err := b.opts.Store.MarkSeen(ctx, "slack-event:"+cb.EventID, time.Hour); err != nil || !first {
		return
	}
	if home, ok := ev.InnerEvent.Data.(*slackevents.AppHomeOpenedEvent); ok && home.Tab != "messages" {
		b.AppHomeOpened(ctx, home.User)
	}
}

// socketHandlers bounds the Socket Mode envelopes handled at once. Handlers only parse, check and queue
// (the work runs on the worker pool), so this is a guard against a flood, not a working limit.
const socketHandlers = 64

// envelopeMemory is how long a Socket Mode envelope id is remembered: Slack redelivers an envelope whose ack
// it did not get a few times within minutes.
const envelopeMemory = time.Hour

// RunSocketMode serves Slack over Socket Mode until ctx ends, with the same handlers as HTTP mode. api must
// carry the app-level token (slack.OptionAppLevelToken). Envelopes are handled concurrently, each acked as
// soon as its handler returns, and each acted on once: a redelivered envelope (same envelope_id, after a
// lost or late ack) is acknowledged again and otherwise ignored.
func (b *Bot) RunSocketMode(ctx context.Context, api *slack.Client, opts ...socketmode.Option) error {
	client := socketmode.New(api, opts...)
	errc := make(chan error, 1)
	go func() { errc <- client.RunContext(ctx) }()
	log := zerolog.Ctx(ctx)
	slots := make(chan struct{}, socketHandlers)
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
			case socketmode.EventTypeSlashCommand, socketmode.EventTypeInteractive, socketmode.EventTypeEventsAPI:
				if evt.Request == nil {
					continue
				}
				select {
				case slots <- struct{}{}:
				case <-ctx.Done():
					return nil
				}
				b.wg.Add(1)
				go func() {
					defer b.wg.Done()
					defer func() { <-slots }()
					b.envelope(ctx, client, evt)
				}()
			case socketmode.EventTypeInvalidAuth:
				return errors.New("bot: Slack refused the app-level token (SLACK_APP_TOKEN)")
			case socketmode.EventTypeConnectionError:
				log.Warn().Msg("socket mode connection error; reconnecting")
			}
		}
	}
}

// envelope handles one Socket Mode envelope and acks it.
func (b *Bot) envelope(ctx context.Context, client *socketmode.Client, evt socketmode.Event) {
	req := *evt.Request
	log := zerolog.Ctx(ctx).With().Str("envelope_id", req.EnvelopeID).Str("envelope_type", req.Type).Int("retry_attempt", req.RetryAttempt).Logger()
	ctx = log.WithContext(ctx)
	if req.EnvelopeID == "" {
		log.Warn().Msg("ignored a Socket Mode envelope without an id")
		return
	}
	first, err := b.opts.Store.MarkSeen(ctx, "slack-envelope:"+req.EnvelopeID, envelopeMemory)
	if err != nil {
		// Without the check a redelivery could act twice: do nothing, and say so.
		log.Error().Err(err).Msg("could not check for a redelivered envelope; refusing it")
		if evt.Type == socketmode.EventTypeSlashCommand {
			_ = client.Ack(req, ephemeral("jitbot could not take this right now, so nothing was done. Try again in a moment."))
		} else {
			_ = client.Ack(req)
		}
		return
	}
	if !first {
		log.Info().Str("retry_reason", req.RetryReason).Msg("ignored a redelivered envelope (acknowledged again)")
		_ = client.Ack(req)
		return
	}
	switch evt.Type {
	case socketmode.EventTypeSlashCommand:
		sc, ok := evt.Data.(slack.SlashCommand)
		if !ok {
			_ = client.Ack(req)
			return
		}
		if msg := b.Command(ctx, sc); msg != nil {
			_ = client.Ack(req, msg)
		} else {
			_ = client.Ack(req)
		}
	case socketmode.EventTypeInteractive:
		cb, ok := evt.Data.(slack.InteractionCallback)
		if !ok {
			_ = client.Ack(req)
			return
		}
		if resp := b.Interaction(ctx, cb); resp != nil {
			_ = client.Ack(req, resp)
		} else {
			_ = client.Ack(req)
		}
	case socketmode.EventTypeEventsAPI:
		_ = client.Ack(req)
		if ev, ok := evt.Data.(slackevents.EventsAPIEvent); ok {
			b.event(ctx, ev)
		}
	}
}
