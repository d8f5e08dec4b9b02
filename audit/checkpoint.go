package audit

import (
	"bufio"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

// A checkpoint is a statement "the audit log's entry Seq has hash Hash", made at At and, when a signing key is
// configured, signed with Ed25519. The key lives outside the store (JITBOT_AUDIT_SIGNING_KEY), so whoever can
// write the store cannot sign a checkpoint for a rewritten log, and a verifier needs only the public key.
//
// Its text form is one line, the same in the checkpoint file and in the Slack audit channel, so a line copied
// from either place can be handed to `jitbot audit verify --checkpoint`:
//
//	jitbot-audit-checkpoint/v1 seq=42 hash=<64 hex> at=2026-01-02T03:04:05.123Z key=<key id> sig=<base64>
//
// An unsigned checkpoint (no signing key configured) has no key and sig fields: it still records the last
// head seen outside the store, which catches a store that lost writes, but proves nothing against someone who
// can write the checkpoint file. accept=1 marks a checkpoint an operator wrote to accept a store that went
// backwards (`jitbot audit accept`): checkpoints before it describe history the store no longer has.
type Checkpoint struct {
	Seq    uint64
	Hash   string
	At     time.Time
	Accept bool
	KeyID  string // empty: unsigned
	Sig    []byte
}

// CheckpointPrefix starts every checkpoint line.
const CheckpointPrefix = "jitbot-audit-checkpoint/v1"

const timeFormat = "2006-01-02T15:04:05.000Z07:00"

// Signed reports whether c carries a signature.
func (c Checkpoint) Signed() bool { return c.KeyID != "" }

// signedMessage is what the signature covers: every field but the signature, in a fixed order.
func (c Checkpoint) signedMessage() []byte {
	accept := "0"
	if c.Accept {
		accept = "1"
	}
	return []byte(strings.Join([]string{CheckpointPrefix, strconv.FormatUint(c.Seq, 10), c.Hash,
		c.At.UTC().Format(timeFormat), accept, c.KeyID}, "\n"))
}

// String is the checkpoint's one-line text form.
func (c Checkpoint) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s seq=%d hash=%s at=%s", CheckpointPrefix, c.Seq, c.Hash, c.At.UTC().Format(timeFormat))
	if c.Accept {
		b.WriteString(" accept=1")
	}
	if c.Signed() {
		fmt.Fprintf(&b, " key=%s sig=%s", c.KeyID, base64.StdEncoding.EncodeToString(c.Sig))
	}
	return b.String()
}

// ParseCheckpoint reads one checkpoint line (leading text before the prefix, such as a Slack timestamp or
// formatting, is ignored).
func ParseCheckpoint(line string) (Checkpoint, error) {
	var c Checkpoint
	i := strings.Index(line, CheckpointPrefix)
	if i < 0 {
		return c, errors.New("not a checkpoint line")
	}
	fields := strings.Fields(strings.Trim(line[i+len(CheckpointPrefix):], "`"))
	seen := map[string]bool{}
	for _, f := range fields {
		k, v, ok := strings.Cut(strings.Trim(f, "`"), "=")
		if !ok || seen[k] {
			return c, fmt.Errorf("checkpoint field %q is malformed or repeated", f)
		}
		seen[k] = true
		var err error
		switch k {
		case "seq":
			c.Seq, err = strconv.ParseUint(v, 10, 64)
		case "hash":
			if b, herr := hex.DecodeString(v); herr != nil || len(b) != 32 {
				err = errors.New("not 64 hex digits")
			}
			c.Hash = v
		case "at":
			c.At, err = time.Parse(timeFormat, v)
		case "accept":
			c.Accept = v == "1"
		case "key":
			c.KeyID = v
		case "sig":
			c.Sig, err = base64.StdEncoding.DecodeString(v)
		default:
			err = errors.New("unknown field")
		}
		if err != nil {
			return c, fmt.Errorf("checkpoint field %s: %v", k, err)
		}
	}
	if !seen["seq"] || !seen["hash"] || !seen["at"] || c.Seq == 0 {
		return c, errors.New("checkpoint needs seq (1 or more), hash and at")
	}
	if seen["key"] != seen["sig"] {
		return c, errors.New("checkpoint has a key without a signature or a signature without a key")
	}
	return c, nil
}

// ReadCheckpoints returns every checkpoint line in r, in order; lines without the prefix are skipped (so a
// file with other text around the lines works), and a line with the prefix that does not parse is an error
// naming its line number.
func ReadCheckpoints(r io.Reader) ([]Checkpoint, error) {
	var out []Checkpoint
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if !strings.Contains(line, CheckpointPrefix) {
			continue
		}
		c, err := ParseCheckpoint(line)
		if err != nil {
			return out, fmt.Errorf("line %d: %w", n, err)
		}
		out = append(out, c)
	}
	if err := sc.Err(); err != nil {
		return out, fmt.Errorf("read checkpoints: %w", err)
	}
	return out, nil
}

// ReadCheckpointFile reads the checkpoints in path. A missing file is (nil, err matching os.ErrNotExist).
func ReadCheckpointFile(path string) ([]Checkpoint, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("audit: checkpoint file: %w", err)
	}
	defer f.Close()
	cs, err := ReadCheckpoints(f)
	if err != nil {
		return cs, fmt.Errorf("audit: checkpoint file %s: %w", path, err)
	}
	return cs, nil
}

// SinceAccept returns the checkpoints from the last accepted one (accept=1) on: the earlier ones describe
// history the operator accepted as lost. skipped is how many were left out.
func SinceAccept(cs []Checkpoint) (current []Checkpoint, skipped int) {
	for i := len(cs) - 1; i >= 0; i-- {
		if cs[i].Accept {
			return cs[i:], i
		}
	}
	return cs, 0
}

// PublicKey is an Ed25519 public key with its id (the first 8 bytes of its SHA-256, in hex).
type PublicKey struct {
	ID  string
	Key ed25519.PublicKey
}

func keyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// ParsePublicKeys reads a comma-separated list of base64 Ed25519 public keys (several during a rotation).
func ParsePublicKeys(s string) ([]PublicKey, error) {
	var out []PublicKey
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		b, err := base64.StdEncoding.DecodeString(part)
		if err != nil || len(b) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("audit: a public key is not %d bytes of base64 (as `jitbot audit keygen` prints it)", ed25519.PublicKeySize)
		}
		out = append(out, PublicKey{ID: keyID(b), Key: ed25519.PublicKey(b)})
	}
	return out, nil
}

// Verify checks c's signature with the key its KeyID names among keys. An unsigned checkpoint verifies
// (there is nothing to check); callers that require signatures test Signed.
func (c Checkpoint) Verify(keys []PublicKey) error {
	if !c.Signed() {
		return nil
	}
	for _, k := range keys {
		if k.ID == c.KeyID {
			if !ed25519.Verify(k.Key, c.signedMessage(), c.Sig) {
				return fmt.Errorf("the signature does not verify with key %s: the checkpoint was altered or forged", k.ID)
			}
			return nil
		}
	}
	if len(keys) == 0 {
		return fmt.Errorf("signed with key %s, and no public key was given to check it (JITBOT_AUDIT_PUBLIC_KEYS or JITBOT_AUDIT_SIGNING_KEY)", c.KeyID)
	}
	return fmt.Errorf("signed with key %s, which is not among the trusted public keys", c.KeyID)
}

// Signer signs checkpoints. Its zero value is not usable; a nil *Signer makes unsigned checkpoints.
type Signer struct {
	priv ed25519.PrivateKey
	pub  PublicKey
}

// ParseSigningKey reads a base64 Ed25519 seed (32 bytes), as `jitbot audit keygen` prints it. The error
// never contains the key.
func ParseSigningKey(s string) (*Signer, error) {
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil || len(b) != ed25519.SeedSize {
		return nil, fmt.Errorf("audit: the signing key is not %d bytes of base64 (make one with `jitbot audit keygen`)", ed25519.SeedSize)
	}
	priv := ed25519.NewKeyFromSeed(b)
	pub := priv.Public().(ed25519.PublicKey)
	return &Signer{priv: priv, pub: PublicKey{ID: keyID(pub), Key: pub}}, nil
}

// GenerateKey returns a new signing key (base64 seed) and its public key (base64).
func GenerateKey() (signingKey, publicKey string, err error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", "", fmt.Errorf("audit: generate key: %w", err)
	}
	return base64.StdEncoding.EncodeToString(priv.Seed()), base64.StdEncoding.EncodeToString(pub), nil
}

// Public returns the signer's public key.
func (s *Signer) Public() PublicKey { return s.pub }

// Checkpoint makes a checkpoint of (seq, hash) at at, signed when s is not nil.
func (s *Signer) Checkpoint(seq uint64, hash string, at time.Time, accept bool) Checkpoint {
	c := Checkpoint{Seq: seq, Hash: hash, At: at.UTC().Truncate(time.Millisecond), Accept: accept}
	if s != nil {
		c.KeyID = s.pub.ID
		c.Sig = ed25519.Sign(s.priv, c.signedMessage())
	}
	return c
}

// AppendCheckpoint appends c's line to the file at path (created 0600 if missing) and syncs it.
func AppendCheckpoint(path string, c Checkpoint) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("audit: checkpoint file: %w", err)
	}
	if _, err := f.WriteString(c.String() + "\n"); err != nil {
		_ = f.Close()
		return fmt.Errorf("audit: write checkpoint to %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return fmt.Errorf("audit: sync checkpoint file %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("audit: close checkpoint file %s: %w", path, err)
	}
	return nil
}
