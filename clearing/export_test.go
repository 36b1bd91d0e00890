package clearing

// WithoutSecurity turns NATS authentication and signed confirmations off
// (TLS is off unless the config names certificates): the baseline
// BenchmarkSecurityCost measures against. Nothing outside tests can.
func WithoutSecurity(cfg *Config) { cfg.plain = true }

// WithSerialCommits makes clearing commit each batch before it prepares
// the next: the baseline of the commit pipeline.
func WithSerialCommits(cfg *Config) { cfg.serialCommits = true }

// VerifyBatch is verifyBatch, for BenchmarkVerify.
var VerifyBatch = verifyBatch
