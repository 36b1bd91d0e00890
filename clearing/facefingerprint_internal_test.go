package clearing

import (
	"crypto/sha256"
	"testing"
	"time"

	"github.com/faregate/faregate/fare"
)

// TestFaceFingerprintKeyed: the fingerprint an enrolment's idempotency
// record keeps (after an erasure too) is an HMAC under clearing's rider
// key: the plain SHA-256 of a guessed request does not confirm it, and
// another clearing house's key gives another; the plain one (an earlier
// build's records) is still what fingerprint(nil) gives.
func TestFaceFingerprintKeyed(t *testing.T) {
	req := FaceEnrolRequest{Subject: "alice", ModelID: "dlib-resnet-v1", FaceOnly: true, Stops: []string{"s1"},
		Consent:     FaceConsent{GivenBy: "alice", Purpose: "travel", LegalBasis: "consent", At: time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)},
		Descriptors: [][fare.FaceDim]float32{{0.1, -0.2}}}
	k1, k2 := make([]byte, RiderKeySize), make([]byte, RiderKeySize)
	k2[0] = 1
	plain, a, b := req.fingerprint(nil), req.fingerprint(k1), req.fingerprint(k2)
	if plain == a || a == b || a != req.fingerprint(k1) {
		t.Errorf("fingerprints: plain %x, under k1 %x, under k2 %x", plain, a, b)
	}
	if plain == ([32]byte{}) || plain == sha256.Sum256(nil) {
		t.Errorf("plain fingerprint %x", plain)
	}
	other := req
	other.Descriptors = [][fare.FaceDim]float32{{0.1, -0.3}}
	if other.fingerprint(k1) == a {
		t.Error("two requests with other descriptors have one fingerprint")
	}
}
