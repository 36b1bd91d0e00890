package clearing

// WithoutSecurity turns NATS authentication and signed confirmations off
// (TLS is off unless the config names certificates): the baseline
// BenchmarkSecurityCost measures against. Nothing outside tests can.
func WithoutSecurity(cfg *Config) { cfg.plain = true }
