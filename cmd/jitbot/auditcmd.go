package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jitbot/jitbot/audit"
	"github.com/jitbot/jitbot/internal/app"
	"github.com/jitbot/jitbot/policy"
	"github.com/jitbot/jitbot/store"
	"github.com/jitbot/jitbot/store/bolt"
)

const auditUsage = `usage:
  jitbot audit verify [--expect-head SEQ:HASH] [--checkpoint FILE]
                                  check the audit log's hash chain against the store's head, an earlier head,
                                  and the signed checkpoints in FILE
  jitbot audit export [--since TIME|DURATION] [--after-seq N]
                                  print audit entries as JSON lines (seq, hashes, event)
  jitbot audit keygen             make an Ed25519 key pair for signed checkpoints
  jitbot audit accept --yes       accept the store's current audit head after it went backwards (writes an
                                  accept checkpoint to JITBOT_AUDIT_CHECKPOINT_FILE; the sweeper resumes)
`

func auditCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) < 1 {
		fmt.Fprint(stderr, auditUsage)
		return 2
	}
	switch args[0] {
	case "verify":
		return auditVerifyCmd(ctx, args[1:], stdout, stderr)
	case "export":
		return auditExportCmd(ctx, args[1:], stdout, stderr)
	case "keygen":
		return auditKeygenCmd(stdout, stderr)
	case "accept":
		return auditAcceptCmd(ctx, args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, auditUsage)
		return 0
	}
	fmt.Fprintf(stderr, "jitbot audit: unknown command %q\n\n%s", args[0], auditUsage)
	return 2
}

// openExistingStore opens the configured store for a command that reads it, without creating anything: a
// data directory or data file that does not exist is an error naming JITBOT_DATA_DIR and JITBOT_REDIS_URL.
func openExistingStore(ctx context.Context, cfg Config) (store.Store, error) {
	if cfg.RedisURL == "" {
		path := filepath.Join(cfg.DataDir, "jitbot.db")
		if _, err := os.Stat(path); err != nil {
			what := "no data file " + path
			if _, derr := os.Stat(cfg.DataDir); derr != nil {
				what = "the data directory " + cfg.DataDir + " does not exist"
			}
			return nil, fmt.Errorf("%s: nothing was opened or created. Set JITBOT_DATA_DIR to the data directory of "+
				"the jitbot that wrote the log, or JITBOT_REDIS_URL (and JITBOT_REDIS_KEY_PREFIX) for a Redis store", what)
		}
		s, err := bolt.Open(path, bolt.Options{AuditLinkKey: cfg.auditLinkKey()})
		if err != nil {
			if errors.Is(err, bolt.ErrFileLocked) {
				return nil, fmt.Errorf("open %s: %w: the embedded store can be read only while jitbot serve is stopped (or use a Redis store)", cfg.storeDescription(), err)
			}
			return nil, fmt.Errorf("open %s: %w", cfg.storeDescription(), err)
		}
		return s, nil
	}
	return openStore(ctx, cfg)
}

// auditKeys returns the public keys that verify checkpoints: JITBOT_AUDIT_PUBLIC_KEYS, and the public half
// of JITBOT_AUDIT_SIGNING_KEY.
func auditKeys(cfg Config) ([]audit.PublicKey, *audit.Signer, error) {
	keys, err := audit.ParsePublicKeys(cfg.AuditPublicKeys)
	if err != nil {
		return nil, nil, fmt.Errorf("JITBOT_AUDIT_PUBLIC_KEYS: %w", err)
	}
	var signer *audit.Signer
	if cfg.AuditSigningKey != "" {
		if signer, err = audit.ParseSigningKey(cfg.AuditSigningKey); err != nil {
			return nil, nil, fmt.Errorf("JITBOT_AUDIT_SIGNING_KEY: %w", err)
		}
		keys = append(keys, signer.Public())
	}
	return keys, signer, nil
}

func auditVerifyCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("audit verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	expect := fs.String("expect-head", "", "a head printed by an earlier verify (SEQ:HASH, or a bare HASH): the log must still have it")
	cpFile := fs.String("checkpoint", "", "a file of checkpoint lines (the checkpoint file, or lines copied from the Slack audit channel); default JITBOT_AUDIT_CHECKPOINT_FILE when it exists")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "jitbot audit verify: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	var o audit.VerifyOptions
	if *expect != "" {
		e, err := audit.ParseExpectation(*expect)
		if err != nil {
			fmt.Fprintf(stderr, "jitbot audit verify: --expect-head %v\n", err)
			return 2
		}
		o.Expect = &e
	}
	cfg, err := loadConfig()
	if err != nil {
		fmt.Fprintln(stderr, "jitbot:", err)
		return 1
	}
	skipped := 0
	if *cpFile == "" && cfg.AuditCheckpointFile != "" {
		if _, err := os.Stat(cfg.AuditCheckpointFile); err == nil {
			*cpFile = cfg.AuditCheckpointFile
			fmt.Fprintf(stdout, "checkpoints from JITBOT_AUDIT_CHECKPOINT_FILE (%s)\n", *cpFile)
		}
	}
	if *cpFile != "" {
		cs, err := audit.ReadCheckpointFile(*cpFile)
		if err != nil {
			fmt.Fprintf(stderr, "jitbot audit verify: --checkpoint: %v\n", err)
			return 1
		}
		if len(cs) == 0 {
			fmt.Fprintf(stderr, "jitbot audit verify: --checkpoint: %s has no checkpoint lines (%s ...)\n", *cpFile, audit.CheckpointPrefix)
			return 1
		}
		o.Checkpoints, skipped = audit.SinceAccept(cs)
		if o.Keys, _, err = auditKeys(cfg); err != nil {
			fmt.Fprintln(stderr, "jitbot:", err)
			return 1
		}
	}
	st, err := openExistingStore(ctx, cfg)
	if err != nil {
		fmt.Fprintln(stderr, "jitbot:", err)
		return 1
	}
	defer st.Close()
	o.LinkKey = cfg.auditLinkKey()
	rep, err := audit.VerifyLog(ctx, st, o)
	if audit.IsKind(err, audit.KindEmpty) {
		fmt.Fprintf(stderr, "audit log NOT verified: the %s has no audit entries and no head. Is this the store jitbot "+
			"serve uses? Check JITBOT_DATA_DIR, or JITBOT_REDIS_URL and JITBOT_REDIS_KEY_PREFIX.\n", cfg.storeDescription())
		return 1
	}
	if err != nil {
		fmt.Fprintf(stderr, "audit log FAILED verification (%s; the chain is intact up to seq %d): %v\n", cfg.storeDescription(), rep.Entries, err)
		return 1
	}
	fmt.Fprintf(stdout, "audit log ok: %d entries, head %d:%s\n", rep.Entries, rep.Entries, rep.HeadHash)
	fmt.Fprintf(stdout, "the last entry is the store's recorded head (nothing cut off its end)\n")
	switch {
	case rep.Keyed == 0:
		fmt.Fprintln(stdout, "links: all unkeyed (set JITBOT_AUDIT_LINK_KEY so that a store writer cannot re-link the log)")
	case rep.KeyedUnchecked > 0:
		fmt.Fprintf(stdout, "links: %d keyed, %d unkeyed before them; the keyed ones were checked for continuity only: set JITBOT_AUDIT_LINK_KEY to recompute them\n",
			rep.Keyed, rep.Unkeyed)
	default:
		fmt.Fprintf(stdout, "links: %d keyed (recomputed with JITBOT_AUDIT_LINK_KEY), %d unkeyed before them (covered by the first keyed link)\n",
			rep.Keyed, rep.Unkeyed)
	}
	switch {
	case *cpFile != "":
		signed := 0
		for _, c := range o.Checkpoints {
			if c.Signed() {
				signed++
			}
		}
		fmt.Fprintf(stdout, "checkpoints: %d checked (%d signed, %d unsigned), latest seq %d of %s\n", rep.Checkpoints, signed,
			rep.Checkpoints-signed, rep.LatestCheckpoint.Seq, rep.LatestCheckpoint.At.Format(time.RFC3339))
		if skipped > 0 {
			fmt.Fprintf(stdout, "checkpoints: %d earlier ones predate an accepted rewind and were not checked\n", skipped)
		}
		if signed == 0 {
			fmt.Fprintln(stdout, "warning: no signed checkpoint: this proves the store kept its writes, not that nobody rewrote it (set JITBOT_AUDIT_SIGNING_KEY)")
		} else if rep.LatestCheckpoint.Seq < rep.Entries {
			fmt.Fprintf(stdout, "entries %d..%d are newer than the latest checkpoint: only their chain was checked\n", rep.LatestCheckpoint.Seq+1, rep.Entries)
		}
	default:
		fmt.Fprintln(stdout, "no --checkpoint given: someone who can write the store could rewrite the whole log and its head undetected; "+
			"verify against published checkpoints (see docs/audit.md)")
	}
	return 0
}

// parseSince reads an RFC 3339 time or a duration back from now.
func parseSince(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t, nil
	}
	if d, err := policy.ParseDuration(s); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("--since %q: want an RFC 3339 time (2026-01-02T15:04:05Z), a date (2026-01-02) or a duration back from now (24h, 7d)", s)
}

type exportedEntry struct {
	Seq      uint64           `json:"seq"`
	PrevHash string           `json:"prev_hash"`
	Hash     string           `json:"hash"`
	Event    store.AuditEvent `json:"event"`
}

func auditExportCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("audit export", flag.ContinueOnError)
	fs.SetOutput(stderr)
	since := fs.String("since", "", "only events at or after this time (RFC 3339, a date, or a duration back from now such as 24h)")
	after := fs.Uint64("after-seq", 0, "only entries after this seq")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var from time.Time
	if *since != "" {
		t, err := parseSince(*since, time.Now())
		if err != nil {
			fmt.Fprintln(stderr, "jitbot audit export:", err)
			return 2
		}
		from = t
	}
	cfg, st, ok := adminStore(ctx, stderr)
	if !ok {
		return 1
	}
	defer st.Close()
	enc := json.NewEncoder(stdout)
	seq, n := *after, 0
	for {
		recs, err := st.ReadAudit(ctx, seq, 1000)
		if err != nil {
			fmt.Fprintln(stderr, "jitbot audit export:", err)
			return 1
		}
		for _, r := range recs {
			seq = r.Seq
			if !from.IsZero() && r.Event.At.Before(from) {
				continue
			}
			if err := enc.Encode(exportedEntry{Seq: r.Seq, PrevHash: r.PrevHash, Hash: r.Hash, Event: r.Event}); err != nil {
				fmt.Fprintln(stderr, "jitbot audit export:", err)
				return 1
			}
			n++
		}
		if len(recs) < 1000 {
			break
		}
	}
	fmt.Fprintf(stderr, "exported %d entries from the %s (unverified: run jitbot audit verify to check the chain)\n", n, cfg.storeDescription())
	return 0
}

func auditKeygenCmd(stdout, stderr io.Writer) int {
	priv, pub, err := audit.GenerateKey()
	if err != nil {
		fmt.Fprintln(stderr, "jitbot:", err)
		return 1
	}
	link := make([]byte, 32)
	if _, err := rand.Read(link); err != nil {
		fmt.Fprintln(stderr, "jitbot:", err)
		return 1
	}
	fmt.Fprintf(stdout, "# Keep the signing key secret (a Kubernetes Secret, a vault); jitbot serve signs checkpoints with it.\n"+
		"JITBOT_AUDIT_SIGNING_KEY=%s\n"+
		"# The public key verifies checkpoints; give it to whoever runs jitbot audit verify --checkpoint.\n"+
		"JITBOT_AUDIT_PUBLIC_KEYS=%s\n"+
		"# The link key keys every audit link (HMAC); every replica and every verifier needs the same one. Secret.\n"+
		"JITBOT_AUDIT_LINK_KEY=%s\n", priv, pub, base64.StdEncoding.EncodeToString(link))
	return 0
}

func auditAcceptCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("audit accept", flag.ContinueOnError)
	fs.SetOutput(stderr)
	yes := fs.Bool("yes", false, "really accept the store's current head (without it, only say what would be accepted)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, err := loadConfig()
	if err != nil {
		fmt.Fprintln(stderr, "jitbot:", err)
		return 1
	}
	if cfg.AuditCheckpointFile == "" {
		fmt.Fprintln(stderr, "jitbot audit accept: JITBOT_AUDIT_CHECKPOINT_FILE is not set: there is no checkpoint file to write the acceptance to")
		return 1
	}
	_, signer, err := auditKeys(cfg)
	if err != nil {
		fmt.Fprintln(stderr, "jitbot:", err)
		return 1
	}
	st, err := openExistingStore(ctx, cfg)
	if err != nil {
		fmt.Fprintln(stderr, "jitbot:", err)
		return 1
	}
	defer st.Close()
	head, err := st.AuditHead(ctx)
	if err != nil {
		fmt.Fprintln(stderr, "jitbot audit accept:", err)
		return 1
	}
	if head.Seq == 0 {
		fmt.Fprintf(stderr, "jitbot audit accept: the %s has no audit head (jitbot serve records its divergence alert first): "+
			"check JITBOT_DATA_DIR, or JITBOT_REDIS_URL and JITBOT_REDIS_KEY_PREFIX\n", cfg.storeDescription())
		return 1
	}
	// Say what is being accepted: the log as it stands, and how it relates to the last checkpoint.
	if _, verr := audit.VerifyLog(ctx, st, audit.VerifyOptions{LinkKey: cfg.auditLinkKey()}); verr != nil {
		fmt.Fprintf(stdout, "warning: the store's log does not verify on its own: %v\n", verr)
	}
	last := "there is no earlier checkpoint"
	if cs, err := audit.ReadCheckpointFile(cfg.AuditCheckpointFile); err == nil && len(cs) > 0 {
		c := cs[len(cs)-1]
		last = fmt.Sprintf("the last checkpoint is seq %d of %s", c.Seq, c.At.Format(time.RFC3339))
		if c.Seq > head.Seq {
			last += fmt.Sprintf(": entries %d..%d will be accepted as lost", head.Seq+1, c.Seq)
		}
	}
	fmt.Fprintf(stdout, "the %s's audit head is %d:%s; %s\n", cfg.storeDescription(), head.Seq, head.Hash, last)
	if !*yes {
		fmt.Fprintln(stdout, "nothing written: run again with --yes to accept this head (grants written after the lost entries may be missing: "+
			"check the providers for access the store no longer knows about)")
		return 0
	}
	if signer == nil {
		fmt.Fprintln(stdout, "warning: JITBOT_AUDIT_SIGNING_KEY is not set, so this acceptance is unsigned: a jitbot serve that signs "+
			"checkpoints ignores unsigned lines (run this where serve's environment is, e.g. kubectl exec)")
	}
	c := signer.Checkpoint(head.Seq, head.Hash, time.Now(), true)
	if err := audit.AppendCheckpoint(cfg.AuditCheckpointFile, c); err != nil {
		fmt.Fprintln(stderr, "jitbot:", err)
		return 1
	}
	fmt.Fprintf(stdout, "accepted; appended to %s (post it to the audit channel too):\n%s\n", cfg.AuditCheckpointFile, strings.TrimSpace(c.String()))
	return 0
}

// auditProblems validates the audit checkpoint settings (never echoing the key).
func (c Config) auditProblems() []string {
	var problems []string
	if c.AuditCheckpointInterval <= 0 {
		problems = append(problems, "JITBOT_AUDIT_CHECKPOINT_INTERVAL must be a positive duration such as 10m")
	}
	if _, _, err := auditKeys(c); err != nil {
		problems = append(problems, err.Error())
	}
	if _, err := parseLinkKey(c.AuditLinkKey); err != nil {
		problems = append(problems, err.Error())
	}
	return problems
}

// parseLinkKey decodes JITBOT_AUDIT_LINK_KEY: base64 of at least 32 random bytes. The error never contains
// the key.
func parseLinkKey(s string) ([]byte, error) {
	if s == "" {
		return nil, nil
	}
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil || len(b) < 32 {
		return nil, errors.New("JITBOT_AUDIT_LINK_KEY must be base64 of at least 32 random bytes (make one with `jitbot audit keygen`)")
	}
	return b, nil
}

// auditLinkKey is the decoded link key (nil when unset); validate has rejected a malformed one.
func (c Config) auditLinkKey() []byte {
	k, _ := parseLinkKey(c.AuditLinkKey)
	return k
}

// auditOptions are the audit monitor's settings for serve.
func (c Config) auditOptions() (app.AuditOptions, error) {
	_, signer, err := auditKeys(c)
	if err != nil {
		return app.AuditOptions{}, err
	}
	return app.AuditOptions{Signer: signer, LinkKey: c.auditLinkKey(), CheckpointFile: c.AuditCheckpointFile,
		CheckpointInterval: c.AuditCheckpointInterval}, nil
}
