package fare

// NATS subjects and stream names shared by terminals and clearing.
//
// Events go to faregate.events.<operator>.<terminal>: a clearing instance can
// own a partition of the city by filtering on operators (or, later, on a
// terminal-hash token) without terminals changing what they publish.
const (
	// EventStream is the JetStream stream holding signed fare events.
	EventStream = "FAREGATE_EVENTS"
	// EventSubjects is the stream's subject filter.
	EventSubjects = "faregate.events.>"
	// QuarantineStream holds rejected messages with their reasons.
	QuarantineStream = "FAREGATE_QUARANTINE"
	// QuarantineSubject is where clearing publishes rejected messages.
	QuarantineSubject = "faregate.quarantine"
	// HeaderReason carries the quarantine reason on a quarantined message.
	HeaderReason = "Faregate-Reason"
	// HeaderDetail carries a human-readable explanation.
	HeaderDetail = "Faregate-Detail"
)

// EventSubject is the subject a terminal publishes its events on.
func EventSubject(operator, terminal string) string {
	return "faregate.events." + operator + "." + terminal
}

// AppliedSubject is where clearing announces a terminal's applied-sequence
// watermark (decimal text): every sequence up to it is durably applied or
// quarantined, so the terminal may drop them from its outbox.
func AppliedSubject(terminal string) string { return "faregate.applied." + terminal }

// WatermarkSubject answers requests for a terminal's watermark, so a
// terminal that missed an announcement (offline, restarted) can ask.
func WatermarkSubject(terminal string) string { return "faregate.watermark." + terminal }
