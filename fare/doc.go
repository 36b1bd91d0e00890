// Package fare holds what a turnstile terminal and the clearing house share:
// the fare event and its canonical, versioned, signed binary encoding, the
// identifiers that appear in it, money in integer minor units, and what
// clearing signs for terminals: confirmations, key rotations and the gate
// lists' entries and heads (the deny list and the concession enrolments, in
// JetStream key-value buckets), with the enrolment periods they carry.
//
// The package imports no other Faregate package; terminal and clearing both
// depend on it, so a change here is a change to the wire format and must bump
// the encoding version.
package fare
