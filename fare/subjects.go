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

// AppliedSubject is where clearing announces a terminal's signed
// Confirmation: every sequence up to its watermark is durably applied or
// rejected, so the terminal may drop them from its outbox.
func AppliedSubject(terminal string) string { return "faregate.applied." + terminal }

// WatermarkSubject answers a terminal's request for a Confirmation, so a
// terminal that missed an announcement (offline, restarted) can ask. The
// request carries the terminal's own watermark in decimal.
func WatermarkSubject(terminal string) string { return "faregate.watermark." + terminal }

// TerminalInboxPrefix is the inbox prefix of a terminal's NATS connection:
// replies to it (JetStream publish acks, confirmations it asked for) arrive
// under it, and only that terminal may subscribe there.
func TerminalInboxPrefix(terminal string) string { return "_INBOX." + terminal }

// TerminalPermissions are the subjects a terminal's NATS user may publish to
// and subscribe to: its own event subject, confirmation request and deny-list
// sync request; its own confirmations and inbox, and clearing's deny-list
// updates (DenySubject), which every gate follows. Nothing else: no other
// terminal's subjects, no publishing on DenySubject, no JetStream API (its
// JetStream publishes are plain publishes whose acks come to its inbox).
func TerminalPermissions(operator, terminal string) (publish, subscribe []string) {
	return []string{EventSubject(operator, terminal), WatermarkSubject(terminal), DenySyncSubject(terminal)},
		[]string{AppliedSubject(terminal), TerminalInboxPrefix(terminal) + ".>", DenySubject}
}
