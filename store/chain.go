package store

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
)

// GenesisHash is the PrevHash of the first audit record.
const GenesisHash = "0000000000000000000000000000000000000000000000000000000000000000"

// ChainHash is the audit log's link function: hex(sha256(prevHash + "\n" + seq + "\n" + ContentDigest(raw))),
// where seq is decimal and raw is the exact stored JSON of the event. Every store computes it the same way
// (the Redis store inside its commit script, from a digest the client sends), and VerifyChain recomputes it
// from the stored bytes.
func ChainHash(prevHash string, seq uint64, raw []byte) string {
	h := sha256.New()
	h.Write([]byte(prevHash))
	h.Write([]byte{'\n'})
	h.Write([]byte(strconv.FormatUint(seq, 10)))
	h.Write([]byte{'\n'})
	h.Write([]byte(ContentDigest(raw)))
	return hex.EncodeToString(h.Sum(nil))
}

// ContentDigest is hex(sha256(raw)), the part of a chain link that depends on the entry's content.
func ContentDigest(raw []byte) string {
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:])
}

// EncodeEvent is the canonical JSON of an event as it is stored and hashed.
func EncodeEvent(e AuditEvent) ([]byte, error) {
	raw, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("store: encode audit event: %w", err)
	}
	return raw, nil
}

// AuditHead is the position of the audit log's last entry: its seq and hash.
type AuditHead struct {
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
}

// ChainError says where the audit chain breaks.
type ChainError struct {
	Seq    uint64
	Reason string
}

func (e *ChainError) Error() string {
	return fmt.Sprintf("audit chain broken at seq %d: %s", e.Seq, e.Reason)
}

// VerifyChain checks that records form an unbroken chain that continues from (afterSeq, prevHash): sequence
// numbers without gaps, each PrevHash equal to the previous Hash, each Hash recomputed from the stored bytes,
// and each stored Event equal to its bytes. It returns the last seq and hash, so a long log can be verified
// page by page.
func VerifyChain(records []AuditRecord, afterSeq uint64, prevHash string) (lastSeq uint64, lastHash string, err error) {
	lastSeq, lastHash = afterSeq, prevHash
	for _, r := range records {
		if r.Seq != lastSeq+1 {
			return lastSeq, lastHash, &ChainError{Seq: lastSeq + 1, Reason: fmt.Sprintf("entry missing (next stored entry is seq %d)", r.Seq)}
		}
		if r.PrevHash != lastHash {
			return lastSeq, lastHash, &ChainError{Seq: r.Seq, Reason: "prev_hash does not match the previous entry's hash"}
		}
		if want := ChainHash(r.PrevHash, r.Seq, r.Raw); want != r.Hash {
			return lastSeq, lastHash, &ChainError{Seq: r.Seq, Reason: "content does not match its hash (entry edited)"}
		}
		var decoded AuditEvent
		if err := json.Unmarshal(r.Raw, &decoded); err != nil {
			return lastSeq, lastHash, &ChainError{Seq: r.Seq, Reason: "stored entry is not valid JSON"}
		}
		lastSeq, lastHash = r.Seq, r.Hash
	}
	return lastSeq, lastHash, nil
}
