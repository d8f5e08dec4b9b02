package redis

// Test hooks for groupcommit_test.go (an external test: store/redistest imports this package).

func AuditQueued(s *Store) int {
	s.groupMu.Lock()
	defer s.groupMu.Unlock()
	return len(s.audit.queue)
}

func AuditBusy(s *Store) bool {
	s.groupMu.Lock()
	defer s.groupMu.Unlock()
	return s.audit.busy
}

func AuditRounds(s *Store) int {
	s.groupMu.Lock()
	defer s.groupMu.Unlock()
	return s.audit.rounds
}

// HoldAudit blocks audited commits from being sent until the returned function is called.
func HoldAudit(s *Store) (release func()) {
	s.auditMu.Lock()
	return s.auditMu.Unlock
}
