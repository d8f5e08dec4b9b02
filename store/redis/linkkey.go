package redis

// SetAuditLinkKey makes every audit link appended from now on keyed (store.KeyedChainHash) with key
// (JITBOT_AUDIT_LINK_KEY); nil or empty turns keyed links off. Call it before the first Commit.
func (s *Store) SetAuditLinkKey(key []byte) {
	s.auditMu.Lock()
	defer s.auditMu.Unlock()
	s.linkKey = append([]byte(nil), key...)
}
