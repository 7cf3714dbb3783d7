package relay

// CacheLen is the number of tags in the lookup cache.
func (r *Relay) CacheLen() int {
	r.reg.mu.Lock()
	defer r.reg.mu.Unlock()
	return len(r.reg.cache)
}
