package clearing

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/faregate/faregate/fare"
)

// TestDebtReasonFitsTheDenyList: whatever an acquirer says of a decline,
// the deny-list reason of a rider in debt fits the list's bound, in valid
// UTF-8, with the money in minor units, decimal and currency.
func TestDebtReasonFitsTheDenyList(t *testing.T) {
	for _, decline := range []string{"", "51 insufficient funds", strings.Repeat("é", 500), strings.Repeat("x", 1000)} {
		r := debtReason(Billing{Debt: 470, LastDecline: decline}, "EUR")
		if _, err := denyChangeOf(fare.Card, "card-1", r, true); err != nil || !utf8.ValidString(r) || !strings.Contains(r, "470 (4.70 EUR)") {
			t.Errorf("decline of %d bytes: reason %q: %v", len(decline), r, err)
		}
	}
}
