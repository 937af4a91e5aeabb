package fleet

// SetAfterCommit lets a test stop a shipper between the catalog's commit
// and the local delete, as a crash would.
func (s *Shipper) SetAfterCommit(fn func() error) { s.afterCommit = fn }
