package main

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/jitbot/jitbot/audit"
	"github.com/jitbot/jitbot/store"
	"github.com/jitbot/jitbot/store/bolt"
	"github.com/jitbot/jitbot/store/redis"
	"github.com/jitbot/jitbot/store/redistest"
)

// cliStore is a store the CLI finds through the environment, with raw access behind the store's back.
type cliStore struct {
	open       func() store.Store // opens the store (the test closes it before running the CLI for bolt)
	deleteSeqs func(seqs ...uint64)
	setHead    func(h store.AuditHead)
	// sharedLocks: another process can hold a lock of this store (Redis). A bbolt file is open in one
	// process at a time, and its locks live in that process.
	sharedLocks bool
}

func boltCLIStore(t *testing.T) cliStore {
	clearEnv(t)
	dir := t.TempDir()
	t.Setenv("JITBOT_DATA_DIR", dir)
	path := filepath.Join(dir, "jitbot.db")
	raw := func(fn func(tx *bbolt.Tx) error) {
		db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if err := db.Update(fn); err != nil {
			t.Fatal(err)
		}
	}
	return cliStore{
		open: func() store.Store {
			st, err := bolt.Open(path, bolt.Options{})
			if err != nil {
				t.Fatal(err)
			}
			return st
		},
		deleteSeqs: func(seqs ...uint64) {
			raw(func(tx *bbolt.Tx) error {
				for _, seq := range seqs {
					k := []byte{0, 0, 0, 0, 0, 0, 0, byte(seq)}
					if err := tx.Bucket([]byte("audit")).Delete(k); err != nil {
						return err
					}
				}
				return nil
			})
		},
		setHead: func(h store.AuditHead) {
			raw(func(tx *bbolt.Tx) error {
				return tx.Bucket([]byte("meta")).Put([]byte("audit_head"), []byte(`{"seq":`+strconv.FormatUint(h.Seq, 10)+`,"hash":"`+h.Hash+`"}`))
			})
		},
	}
}

func redisCLIStore(t *testing.T) cliStore {
	clearEnv(t)
	url, prefix := redistest.URL(t), redistest.Prefix(t)
	t.Setenv("JITBOT_REDIS_URL", url)
	t.Setenv("JITBOT_REDIS_KEY_PREFIX", prefix)
	c := redistest.Client(t)
	ctx := context.Background()
	return cliStore{
		sharedLocks: true,
		open: func() store.Store {
			st, err := redis.Open(ctx, url, redis.Options{Prefix: prefix})
			if err != nil {
				t.Fatal(err)
			}
			return st
		},
		deleteSeqs: func(seqs ...uint64) {
			for _, seq := range seqs {
				if err := c.HDel(ctx, prefix+":audit:log", strconv.FormatUint(seq, 10)).Err(); err != nil {
					t.Fatal(err)
				}
			}
		},
		setHead: func(h store.AuditHead) {
			if err := c.MSet(ctx, prefix+":audit:seq", strconv.FormatUint(h.Seq, 10), prefix+":audit:head", h.Hash).Err(); err != nil {
				t.Fatal(err)
			}
		},
	}
}

func bothCLIStores(t *testing.T, fn func(t *testing.T, cs cliStore)) {
	t.Run("bolt", func(t *testing.T) { fn(t, boltCLIStore(t)) })
	t.Run("redis", func(t *testing.T) { fn(t, redisCLIStore(t)) })
}

// seeded writes n audit events and returns their records; the store is closed again.
func seeded(t *testing.T, cs cliStore, n int) []store.AuditRecord {
	t.Helper()
	st := cs.open()
	defer st.Close()
	seedAudit(t, st, n)
	recs, err := st.ReadAudit(context.Background(), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

func TestAuditVerifyReportsACutOffTail(t *testing.T) {
	bothCLIStores(t, func(t *testing.T, cs cliStore) {
		seeded(t, cs, 5)
		if code, stdout, stderr := runCLI(t, "audit", "verify"); code != 0 || !strings.Contains(stdout, "audit log ok: 5 entries") {
			t.Fatalf("intact log: exit %d %s %s", code, stdout, stderr)
		}
		// Delete the last two entries, leaving the sequence counter and head: every remaining link is intact.
		cs.deleteSeqs(4, 5)
		code, stdout, stderr := runCLI(t, "audit", "verify")
		if code != 1 || !strings.Contains(stderr, "ends at seq 3 but the store's head is seq 5") || !strings.Contains(stderr, "entries 4..5 were removed from its end") {
			t.Fatalf("cut-off tail: exit %d, stdout %q, stderr %q; want a truncation report", code, stdout, stderr)
		}
	})
}

func TestAuditVerifyHeadSetBack(t *testing.T) {
	bothCLIStores(t, func(t *testing.T, cs cliStore) {
		recs := seeded(t, cs, 5)
		cs.setHead(store.AuditHead{Seq: 3, Hash: recs[2].Hash})
		code, _, stderr := runCLI(t, "audit", "verify")
		if code != 1 || !strings.Contains(stderr, "head is seq 3 but entries continue to seq 5") {
			t.Fatalf("head set back: exit %d, %q", code, stderr)
		}
	})
}

func TestAuditVerifyNeverSaysOKAboutNothing(t *testing.T) {
	t.Run("missing data directory", func(t *testing.T) {
		clearEnv(t)
		dir := filepath.Join(t.TempDir(), "not-there")
		t.Setenv("JITBOT_DATA_DIR", dir)
		code, stdout, stderr := runCLI(t, "audit", "verify")
		if code != 1 || stdout != "" || !strings.Contains(stderr, dir+" does not exist") ||
			!strings.Contains(stderr, "JITBOT_DATA_DIR") || !strings.Contains(stderr, "JITBOT_REDIS_URL") {
			t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Fatalf("verify created %s (%v)", dir, err)
		}
	})
	t.Run("directory without a data file", func(t *testing.T) {
		clearEnv(t)
		dir := t.TempDir()
		t.Setenv("JITBOT_DATA_DIR", dir)
		code, _, stderr := runCLI(t, "audit", "verify")
		if code != 1 || !strings.Contains(stderr, "no data file") || !strings.Contains(stderr, "JITBOT_DATA_DIR") {
			t.Fatalf("exit %d, stderr %q", code, stderr)
		}
		if _, err := os.Stat(filepath.Join(dir, "jitbot.db")); !os.IsNotExist(err) {
			t.Fatalf("verify created a database (%v)", err)
		}
	})
	bothCLIStores(t, func(t *testing.T, cs cliStore) {
		cs.open().Close() // a store that exists and has nothing in its log
		code, stdout, stderr := runCLI(t, "audit", "verify")
		if code != 1 || strings.Contains(stdout, "ok") || !strings.Contains(stderr, "no audit entries") ||
			!strings.Contains(stderr, "JITBOT_DATA_DIR") || !strings.Contains(stderr, "JITBOT_REDIS_URL") {
			t.Fatalf("empty store: exit %d, stdout %q, stderr %q", code, stdout, stderr)
		}
	})
}

func TestAuditVerifyExpectHeadSaysWhatItFound(t *testing.T) {
	bothCLIStores(t, func(t *testing.T, cs cliStore) {
		recs := seeded(t, cs, 3)
		if code, _, stderr := runCLI(t, "audit", "verify", "--expect-head", "2:"+recs[1].Hash); code != 0 {
			t.Fatalf("an older head the log has: exit %d %s", code, stderr)
		}
		if code, _, stderr := runCLI(t, "audit", "verify", "--expect-head", recs[2].Hash); code != 0 {
			t.Fatalf("a bare hash the log has: exit %d %s", code, stderr)
		}
		other := strings.Repeat("0f", 32)
		code, _, stderr := runCLI(t, "audit", "verify", "--expect-head", other)
		if code != 1 || !strings.Contains(stderr, "no entry has the expected head hash") || strings.Contains(stderr, "removed from its end") {
			t.Fatalf("unknown hash: exit %d, %q", code, stderr)
		}
		code, _, stderr = runCLI(t, "audit", "verify", "--expect-head", "2:"+other)
		if code != 1 || !strings.Contains(stderr, "entry 2 has hash") || strings.Contains(stderr, "removed") {
			t.Fatalf("wrong hash at a seq: exit %d, %q", code, stderr)
		}
		code, _, stderr = runCLI(t, "audit", "verify", "--expect-head", "9:"+other)
		if code != 1 || !strings.Contains(stderr, "the expected head is seq 9 but the log has only 3 entries") {
			t.Fatalf("head past the end: exit %d, %q", code, stderr)
		}
		code, _, stderr = runCLI(t, "audit", "verify", "--expect-head", "not-a-hash")
		if code != 2 || !strings.Contains(stderr, "64 hex digits") {
			t.Fatalf("malformed head: exit %d, %q", code, stderr)
		}
	})
}

// rewrite replaces every entry from seq from on with re-hashed edited copies and moves the head, as someone
// with write access to the store (but not the signing key) can.
func rewrite(t *testing.T, cs cliStore, recs []store.AuditRecord, edit func(raw string) string, write func(seq uint64, prev, hash, raw string)) store.AuditHead {
	t.Helper()
	prev := store.GenesisHash
	for _, r := range recs {
		raw := edit(string(r.Raw))
		h := store.ChainHash(prev, r.Seq, []byte(raw))
		write(r.Seq, prev, h, raw)
		prev = h
	}
	head := store.AuditHead{Seq: recs[len(recs)-1].Seq, Hash: prev}
	cs.setHead(head)
	return head
}

func TestAuditVerifyAgainstSignedCheckpoints(t *testing.T) {
	clearEnv(t)
	priv, pub, err := audit.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	cs := boltCLIStore(t)
	path := filepath.Join(os.Getenv("JITBOT_DATA_DIR"), "jitbot.db")
	t.Setenv("JITBOT_AUDIT_PUBLIC_KEYS", pub)
	signer, err := audit.ParseSigningKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	recs := seeded(t, cs, 4)
	cpFile := filepath.Join(t.TempDir(), "checkpoints")
	if err := audit.AppendCheckpoint(cpFile, signer.Checkpoint(3, recs[2].Hash, time.Now(), false)); err != nil {
		t.Fatal(err)
	}
	if err := audit.AppendCheckpoint(cpFile, signer.Checkpoint(4, recs[3].Hash, time.Now(), false)); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runCLI(t, "audit", "verify", "--checkpoint", cpFile)
	if code != 0 || !strings.Contains(stdout, "checkpoints: 2 checked (2 signed, 0 unsigned), latest seq 4") {
		t.Fatalf("matching checkpoints: exit %d, %s %s", code, stdout, stderr)
	}

	// Someone with write access to the data file rewrites the whole log consistently and moves the head.
	rewrite(t, cs, recs, func(raw string) string { return strings.Replace(raw, "U0ALICE", "U0MALLORY", 1) },
		func(seq uint64, prev, hash, raw string) {
			db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			v := `{"prev_hash":"` + prev + `","hash":"` + hash + `","raw":` + strconv.Quote(raw) + `}`
			if err := db.Update(func(tx *bbolt.Tx) error {
				return tx.Bucket([]byte("audit")).Put([]byte{0, 0, 0, 0, 0, 0, 0, byte(seq)}, []byte(v))
			}); err != nil {
				t.Fatal(err)
			}
		})
	if code, stdout, _ := runCLI(t, "audit", "verify"); code != 0 || !strings.Contains(stdout, "no --checkpoint given") {
		t.Fatalf("without checkpoints the rewrite cannot be seen (and verify says so): exit %d %s", code, stdout)
	}
	code, _, stderr = runCLI(t, "audit", "verify", "--checkpoint", cpFile)
	if code != 1 || !strings.Contains(stderr, "entry 3 has hash") || !strings.Contains(stderr, "the log was rewritten at or before seq 3") {
		t.Fatalf("rewritten log against signed checkpoints: exit %d, %q", code, stderr)
	}

	// A checkpoint forged for the rewritten log without the key does not verify.
	recs2 := seeded(t, cs, 0)
	forged := signer.Checkpoint(4, recs2[3].Hash, time.Now(), false)
	forged.Sig[0] ^= 1
	forgedFile := filepath.Join(t.TempDir(), "forged")
	if err := os.WriteFile(forgedFile, []byte("posted in #audit: `"+forged.String()+"`\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = runCLI(t, "audit", "verify", "--checkpoint", forgedFile)
	if code != 1 || !strings.Contains(stderr, "does not verify") {
		t.Fatalf("forged checkpoint: exit %d, %q", code, stderr)
	}
	// Without the public key, a signed checkpoint cannot be trusted and verify says why.
	t.Setenv("JITBOT_AUDIT_PUBLIC_KEYS", "")
	code, _, stderr = runCLI(t, "audit", "verify", "--checkpoint", cpFile)
	if code != 1 || !strings.Contains(stderr, "JITBOT_AUDIT_PUBLIC_KEYS") {
		t.Fatalf("no public key: exit %d, %q", code, stderr)
	}
}

func TestAuditAcceptAfterLostWrites(t *testing.T) {
	bothCLIStores(t, func(t *testing.T, cs cliStore) {
		cpFile := filepath.Join(t.TempDir(), "checkpoints")
		recs := seeded(t, cs, 5)
		if err := audit.AppendCheckpoint(cpFile, (*audit.Signer)(nil).Checkpoint(5, recs[4].Hash, time.Now(), false)); err != nil {
			t.Fatal(err)
		}
		if code, _, stderr := runCLI(t, "audit", "accept", "--yes"); code != 1 || !strings.Contains(stderr, "JITBOT_AUDIT_CHECKPOINT_FILE") {
			t.Fatalf("accept without a checkpoint file: exit %d, %q", code, stderr)
		}
		t.Setenv("JITBOT_AUDIT_CHECKPOINT_FILE", cpFile)
		// The store loses its last two writes.
		cs.deleteSeqs(4, 5)
		cs.setHead(store.AuditHead{Seq: 3, Hash: recs[2].Hash})
		code, _, stderr := runCLI(t, "audit", "verify", "--checkpoint", cpFile)
		if code != 1 || !strings.Contains(stderr, "published seq 5") {
			t.Fatalf("verify against the checkpoint after lost writes: exit %d, %q", code, stderr)
		}
		code, stdout, _ := runCLI(t, "audit", "accept")
		if code != 0 || !strings.Contains(stdout, "entries 4..5 will be accepted as lost") || !strings.Contains(stdout, "nothing written") {
			t.Fatalf("accept dry run: exit %d, %q", code, stdout)
		}
		if cps, _ := audit.ReadCheckpointFile(cpFile); len(cps) != 1 {
			t.Fatalf("the dry run wrote to the checkpoint file: %d lines", len(cps))
		}
		if code, stdout, stderr := runCLI(t, "audit", "accept", "--yes"); code != 0 || !strings.Contains(stdout, "accepted") {
			t.Fatalf("accept: exit %d, %q %q", code, stdout, stderr)
		}
		code, stdout, stderr = runCLI(t, "audit", "verify", "--checkpoint", cpFile)
		if code != 0 || !strings.Contains(stdout, "1 earlier ones predate an accepted rewind") {
			t.Fatalf("verify after the acceptance: exit %d, %q %q", code, stdout, stderr)
		}
		// Without --checkpoint, the configured checkpoint file is used.
		code, stdout, stderr = runCLI(t, "audit", "verify")
		if code != 0 || !strings.Contains(stdout, "checkpoints from JITBOT_AUDIT_CHECKPOINT_FILE") || !strings.Contains(stdout, "checkpoints: 1 checked") {
			t.Fatalf("verify with the configured checkpoint file: exit %d, %q %q", code, stdout, stderr)
		}
	})
}

func TestBadAuditKeyStopsStartupWithoutPrintingIt(t *testing.T) {
	const secret = "bm90LWEtdmFsaWQta2V5LWJ1dC1hLXNlY3JldA=="
	for env, want := range map[string]string{
		"JITBOT_AUDIT_SIGNING_KEY": "JITBOT_AUDIT_SIGNING_KEY: audit: the signing key is not 32 bytes of base64",
		"JITBOT_AUDIT_PUBLIC_KEYS": "JITBOT_AUDIT_PUBLIC_KEYS: audit: a public key is not 32 bytes of base64",
	} {
		t.Run(env, func(t *testing.T) {
			clearEnv(t)
			t.Setenv("JITBOT_DATA_DIR", t.TempDir())
			t.Setenv(env, secret)
			code, _, stderr := runCLI(t, "serve")
			if code != 1 || !strings.Contains(stderr, want) || strings.Contains(stderr, secret) {
				t.Fatalf("exit %d, stderr %q; want %q and no key", code, stderr, want)
			}
		})
	}
	clearEnv(t)
	t.Setenv("JITBOT_DATA_DIR", t.TempDir())
	t.Setenv("JITBOT_AUDIT_CHECKPOINT_INTERVAL", "0s")
	if code, _, stderr := runCLI(t, "serve"); code != 1 || !strings.Contains(stderr, "JITBOT_AUDIT_CHECKPOINT_INTERVAL must be a positive duration") {
		t.Fatalf("zero interval: exit %d, %q", code, stderr)
	}
}

func TestAuditKeygenMakesAWorkingPair(t *testing.T) {
	code, stdout, _ := runCLI(t, "audit", "keygen")
	if code != 0 {
		t.Fatalf("keygen exit %d", code)
	}
	var priv, pub string
	for _, line := range strings.Split(stdout, "\n") {
		if v, ok := strings.CutPrefix(line, "JITBOT_AUDIT_SIGNING_KEY="); ok {
			priv = v
		}
		if v, ok := strings.CutPrefix(line, "JITBOT_AUDIT_PUBLIC_KEYS="); ok {
			pub = v
		}
	}
	s, err := audit.ParseSigningKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := audit.ParsePublicKeys(pub)
	if err != nil || len(keys) != 1 {
		t.Fatal(keys, err)
	}
	if err := s.Checkpoint(1, strings.Repeat("00", 32), time.Now(), false).Verify(keys); err != nil {
		t.Fatalf("a checkpoint signed with the new key does not verify with its public key: %v", err)
	}
}

func TestAuditVerifyWithTheLinkKey(t *testing.T) {
	bothCLIStores(t, func(t *testing.T, cs cliStore) {
		const key = "a2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2s=" // 32 bytes
		t.Setenv("JITBOT_AUDIT_LINK_KEY", key)
		st := cs.open() // the test opens stores itself: give them the key as serve would
		st.Close()
		cfg, err := loadConfig()
		if err != nil {
			t.Fatal(err)
		}
		st, err = openStore(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		seedAudit(t, st, 3)
		st.Close()
		code, stdout, stderr := runCLI(t, "audit", "verify")
		if code != 0 || !strings.Contains(stdout, "links: 3 keyed (recomputed with JITBOT_AUDIT_LINK_KEY)") {
			t.Fatalf("keyed log: exit %d, %q %q", code, stdout, stderr)
		}
		t.Setenv("JITBOT_AUDIT_LINK_KEY", "")
		code, stdout, _ = runCLI(t, "audit", "verify")
		if code != 0 || !strings.Contains(stdout, "checked for continuity only") {
			t.Fatalf("keyed log without the key: exit %d, %q", code, stdout)
		}
		t.Setenv("JITBOT_AUDIT_LINK_KEY", "c2hvcnQ=")
		if code, _, stderr := runCLI(t, "audit", "verify"); code != 1 || !strings.Contains(stderr, "at least 32 random bytes") || strings.Contains(stderr, "c2hvcnQ=") {
			t.Fatalf("short key: exit %d, %q", code, stderr)
		}
	})
}
