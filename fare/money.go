package fare

import (
	"fmt"
	"strconv"
	"strings"
)

// Amount is an amount of money in a currency's minor units (cents, kopecks).
// Money is never a float anywhere in Faregate.
type Amount int64

// MaxAmount is the largest fare, price, cap or flat fare Faregate takes, in
// minor units (10 billion euros in cents): far above any fare, and far
// enough below int64's bound that the sums of millions of them (balances,
// a period's nets) cannot wrap.
const MaxAmount Amount = 1_000_000_000_000

// Add returns a+b, and false if the sum wraps int64 (the caller stops
// rather than post a wrong-signed total).
func (a Amount) Add(b Amount) (Amount, bool) {
	s := a + b
	if (b > 0 && s < a) || (b < 0 && s > a) {
		return s, false
	}
	return s, true
}

// currencyDigits lists the ISO 4217 minor-unit digits of the active codes
// that do not use two digits; every other code in iso4217 uses two.
var currencyDigits = map[string]int{
	"BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0,
	"KRW": 0, "PYG": 0, "RWF": 0, "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0,
	"XAF": 0, "XOF": 0, "XPF": 0,
	"BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
	"CLF": 4, "UYW": 4,
}

// iso4217 is the set of active ISO 4217 alphabetic codes with a minor unit
// (funds codes and precious metals without one are left out).
var iso4217 = func() map[string]bool {
	const codes = "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV BRL BSD BTN BWP BYN BZD " +
		"CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS " +
		"GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK " +
		"LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB " +
		"PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD SSP STN SVC SYP SZL THB " +
		"TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD USN UYI UYU UYW UZS VED VES VND VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG ZWL"
	m := make(map[string]bool)
	for _, c := range strings.Fields(codes) {
		m[c] = true
	}
	return m
}()

// CurrencyDigits returns the number of minor-unit digits of an active ISO
// 4217 code (2 for EUR, 0 for JPY, 3 for KWD); unknown codes are rejected
// rather than guessed.
func CurrencyDigits(code string) (int, error) {
	if !iso4217[code] {
		return 0, fmt.Errorf("currency %q: not an active ISO 4217 code", code)
	}
	if d, ok := currencyDigits[code]; ok {
		return d, nil
	}
	return 2, nil
}

// Format renders a in major units with the currency's digits: 570 RUB is
// "5.70", 1250 KRW is "1250".
func (a Amount) Format(currency string) string {
	d, err := CurrencyDigits(currency)
	if err != nil {
		return strconv.FormatInt(int64(a), 10)
	}
	return FormatMinor(int64(a), d)
}

// FormatMinor renders v minor units with digits decimals: (570, 2) is "5.70".
func FormatMinor(v int64, digits int) string {
	neg := v < 0
	u := uint64(v)
	if neg {
		u = uint64(-v)
	}
	s := strconv.FormatUint(u, 10)
	if digits > 0 {
		if len(s) <= digits {
			s = strings.Repeat("0", digits-len(s)+1) + s
		}
		s = s[:len(s)-digits] + "." + s[len(s)-digits:]
	}
	if neg {
		s = "-" + s
	}
	return s
}

// ParseAmount parses a decimal in major units ("5.70") into minor units for
// the currency, rejecting more fractional digits than the currency has.
func ParseAmount(s, currency string) (Amount, error) {
	d, err := CurrencyDigits(currency)
	if err != nil {
		return 0, err
	}
	orig := s
	neg := strings.HasPrefix(s, "-")
	if neg {
		s = s[1:]
	}
	whole, frac, hasDot := strings.Cut(s, ".")
	if whole == "" || (hasDot && frac == "") {
		return 0, fmt.Errorf("amount %q: not a decimal number", orig)
	}
	if len(frac) > d {
		return 0, fmt.Errorf("amount %q: %s has %d minor digits, got %d", orig, currency, d, len(frac))
	}
	frac += strings.Repeat("0", d-len(frac))
	digits := whole + frac
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return 0, fmt.Errorf("amount %q: not a decimal number", orig)
		}
	}
	v, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || Amount(v) > MaxAmount {
		return 0, fmt.Errorf("amount %q: out of range (at most %s %s)", orig, MaxAmount.Format(currency), currency)
	}
	if neg {
		v = -v
	}
	return Amount(v), nil
}
