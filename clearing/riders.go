package clearing

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"

	"github.com/faregate/faregate/fare"
)

// RiderKeySize is the size of clearing's rider pseudonym key, and
// RiderKeyFile its file in clearing's data dir.
const (
	RiderKeySize = 32
	RiderKeyFile = "rider.key"
)

// RiderPseudonym is the pseudonymous id of the rider behind one medium: a
// keyed hash (HMAC-SHA256, first 16 bytes, 0x hex) of the media kind and
// token under a key only clearing holds. Outside the terminal nobody sees a
// raw card token or face subject id: the journal, the API and the logs use
// this id, and only a holder of the key (clearing, or a rider-support desk
// using `faregate clearing rider-id`) can map a token to it.
func RiderPseudonym(key []byte, m fare.MediaKind, token string) string {
	h := hmac.New(sha256.New, key)
	h.Write([]byte{byte(m)})
	h.Write([]byte(token))
	var sum [sha256.Size]byte
	return "0x" + hex.EncodeToString(h.Sum(sum[:0])[:16])
}

// RiderAccount is the journal account of the rider behind one medium:
// passenger/<media>/<pseudonym>.
func RiderAccount(key []byte, m fare.MediaKind, token string) string {
	return "passenger/" + m.String() + "/" + RiderPseudonym(key, m, token)
}
