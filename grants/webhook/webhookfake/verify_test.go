package webhookfake

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"testing"
	"time"
)

// The Standard Webhooks test vector (libraries/go/webhook_test.go, TestWebhookSign, in
// github.com/standard-webhooks/standard-webhooks).
const (
	vectorSecret = "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" // base64 part of whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
	vectorID     = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	vectorTS     = 1614265330
	vectorBody   = `{"test": 2432232314}`
	vectorSig    = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func vectorKey(t *testing.T) []byte {
	k, err := base64.StdEncoding.DecodeString(vectorSecret)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func headers(id string, ts int64, sig string) http.Header {
	h := http.Header{}
	h.Set(HeaderID, id)
	h.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	h.Set(HeaderSignature, sig)
	return h
}

func TestVerifySpecVector(t *testing.T) {
	key := vectorKey(t)
	now := time.Unix(vectorTS, 0)
	if err := Verify(key, headers(vectorID, vectorTS, vectorSig), []byte(vectorBody), now); err != nil {
		t.Fatalf("spec vector rejected: %v", err)
	}
	// Rotation: several signatures, other versions ignored, one valid is enough.
	multi := "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= v1a,AAAA v2,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= " + vectorSig
	if err := Verify(key, headers(vectorID, vectorTS, multi), []byte(vectorBody), now); err != nil {
		t.Fatalf("multi-signature header rejected: %v", err)
	}
}

func TestVerifyRejects(t *testing.T) {
	key := vectorKey(t)
	now := time.Unix(vectorTS, 0)
	body := []byte(vectorBody)
	cases := []struct {
		name string
		h    http.Header
		body []byte
		now  time.Time
		want error
	}{
		{"missing id", headers("", vectorTS, vectorSig), body, now, ErrMissingHeader},
		{"missing signature", headers(vectorID, vectorTS, ""), body, now, ErrMissingHeader},
		{"missing timestamp", func() http.Header { h := headers(vectorID, 0, vectorSig); h.Del(HeaderTimestamp); return h }(), body, now, ErrMissingHeader},
		{"malformed timestamp", func() http.Header {
			h := headers(vectorID, 0, vectorSig)
			h.Set(HeaderTimestamp, "1614265330.5")
			return h
		}(), body, now, ErrBadTimestamp},
		{"stale", headers(vectorID, vectorTS, vectorSig), body, now.Add(Tolerance + time.Second), ErrTimestampSkew},
		{"future", headers(vectorID, vectorTS, vectorSig), body, now.Add(-Tolerance - time.Second), ErrTimestampSkew},
		{"tampered body", headers(vectorID, vectorTS, vectorSig), []byte(`{"test": 2432232315}`), now, ErrInvalidSignature},
		{"other id", headers("msg_other", vectorTS, vectorSig), body, now, ErrInvalidSignature},
		{"bad signature", headers(vectorID, vectorTS, "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc="), body, now, ErrInvalidSignature},
		{"wrong version", headers(vectorID, vectorTS, "v2"+vectorSig[2:]), body, now, ErrInvalidSignature},
		{"no comma", headers(vectorID, vectorTS, "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="), body, now, ErrInvalidSignature},
		{"not base64", headers(vectorID, vectorTS, "v1,***"), body, now, ErrInvalidSignature},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := Verify(key, c.h, c.body, c.now)
			if !errors.Is(err, c.want) {
				t.Fatalf("Verify = %v, want %v", err, c.want)
			}
		})
	}
	if err := Verify(nil, headers(vectorID, vectorTS, vectorSig), body, now); !errors.Is(err, ErrNoSecret) {
		t.Fatalf("empty secret: %v", err)
	}
	if err := Verify([]byte("other key"), headers(vectorID, vectorTS, vectorSig), body, now); !errors.Is(err, ErrInvalidSignature) {
		t.Fatalf("wrong key: %v", err)
	}
}

func TestVerifyToleranceBoundary(t *testing.T) {
	key := []byte("k")
	body := []byte("{}")
	sign := func(ts int64) string {
		m := hmac.New(sha256.New, key)
		m.Write([]byte("id." + strconv.FormatInt(ts, 10) + ".{}"))
		return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
	}
	now := time.Unix(2_000_000_000, 0)
	for _, off := range []time.Duration{-Tolerance, 0, Tolerance} {
		ts := now.Add(off).Unix()
		if err := Verify(key, headers("id", ts, sign(ts)), body, now); err != nil {
			t.Errorf("offset %s: %v", off, err)
		}
	}
}
