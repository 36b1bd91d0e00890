package clearing

// WithoutSecurity turns NATS authentication and signed confirmations off
// (TLS is off unless the config names certificates): the baseline
// BenchmarkSecurityCost measures against. Nothing outside tests can.
func WithoutSecurity(cfg *Config) { cfg.plain = true }

// SilenceDenyUpdates makes clearing announce no deny-list change (nor
// repeat one) while quiet: terminals miss them, as if the messages were
// lost, and must notice the gap at the next one.
func SilenceDenyUpdates(c *Clearing, quiet bool) {
	c.deny.mu.Lock()
	c.deny.quiet = quiet
	c.deny.mu.Unlock()
}
