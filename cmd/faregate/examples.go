package main

import (
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// commandExamples are the Example sections of the commands that do not carry
// their own, by command path. They are kept together so that they read as one
// set (the same ids, directories and files as README's walk-through); a
// command's own Example takes precedence. TestEveryCommandHasExample fails
// when a command has neither.
var commandExamples = map[string]string{
	"faregate clearing": `  faregate clearing --data data/clearing --registry registry.json --feed feed.zip --period 10s
  FAREGATE_DATA=/var/lib/faregate FAREGATE_LOG_FORMAT=json faregate clearing --registry /etc/faregate/registry.json`,
	"faregate clearing token":          "  faregate clearing token issue --data data/clearing --name metro-recon --role operator --operator metro",
	"faregate clearing token issue":    "  faregate clearing token issue --data data/clearing --name metro-recon --role operator --operator metro\n  faregate clearing token issue --data data/clearing --name audit --role auditor",
	"faregate clearing token list":     "  faregate clearing token list --data data/clearing",
	"faregate clearing token revoke":   "  faregate clearing token revoke --data data/clearing --name metro-recon",
	"faregate clearing rider-id":       "  faregate clearing rider-id --data data/clearing --media card --token 4111-0000-1234\n  printf %s \"$TOKEN\" | faregate clearing rider-id --data data/clearing --media card --token -",
	"faregate clearing deny":           "  faregate clearing deny add --data data/clearing --media card --token 4111-0000-1234 --reason \"reported stolen\"",
	"faregate clearing deny add":       "  faregate clearing deny add --data data/clearing --media card --token 4111-0000-1234 --reason \"reported stolen\"",
	"faregate clearing deny remove":    "  faregate clearing deny remove --data data/clearing --media card --token 4111-0000-1234",
	"faregate clearing deny list":      "  faregate clearing deny list --data data/clearing",
	"faregate clearing enrol":          "  faregate clearing enrol add --data data/clearing --media card --token 4111-0000-1234 --category concession \\\n      --valid-until 2027-12-31T04:00:00+01:00 --approved-by desk-7",
	"faregate clearing enrol add":      "  faregate clearing enrol add --data data/clearing --media card --token 4111-0000-1234 --category concession \\\n      --valid-until 2027-12-31T04:00:00+01:00 --approved-by desk-7",
	"faregate clearing enrol revoke":   "  faregate clearing enrol revoke --data data/clearing --media card --token 4111-0000-1234 --approved-by desk-7",
	"faregate clearing enrol list":     "  faregate clearing enrol list --data data/clearing\n  faregate clearing enrol list --data data/clearing --media card --token 4111-0000-1234",
	"faregate clearing faces":          "  faregate clearing faces list --token-file desk.token",
	"faregate clearing faces show":     "  faregate clearing faces show --token-file desk.token --subject rider-4f2a",
	"faregate clearing faces list":     "  faregate clearing faces list --token-file desk.token --api https://clearing.example:8443 --api-ca ca.pem",
	"faregate clearing feeds":          "  faregate clearing feeds schedule --token-file fares.token --feed city-2027.zip --from 2027-01-01T04:00:00+01:00\n  faregate clearing feeds list --token-file fares.token",
	"faregate clearing feeds schedule": "  faregate clearing feeds schedule --token-file fares.token --feed city-2027/ --from 2027-01-01T04:00:00+01:00 \\\n      --api https://clearing.example:8443 --api-ca ca.pem",
	"faregate clearing feeds list":     "  faregate clearing feeds list --token-file fares.token",
	"faregate clearing feeds withdraw": "  faregate clearing feeds withdraw --token-file fares.token --version sha256:0x71e5f7856a260c05",

	"faregate terminal": `  faregate terminal --id t1 --operator metro --stop S1 --key t1.key --data data/t1 \
      --clearing-key $(faregate clearing key --data data/clearing) --source stdin
  faregate terminal --id t1 --operator metro --stop S1 --key t1.key --clearing-key 0x... --source generate --rate 5 --count 100`,

	"faregate nats": "  faregate nats config --data data/clearing --clearing-seed clearing.nk --out nats.conf",

	"faregate ledger":                    "  faregate ledger status --data data/run1\n  faregate ledger audit --data data/run1\n  faregate ledger prove --data data/run1 --event 0123456789abcdef0123456789abcdef",
	"faregate ledger status":             "  faregate ledger status --data data/run1\n  faregate ledger status --eth-rpc http://besu:8545 --contract 0xC0FFEE... --operator metro",
	"faregate ledger audit":              "  faregate ledger audit --data data/run1\n  faregate ledger audit --clearing-data data/clearing --eth-rpc http://besu:8545 --contract 0xC0FFEE... --json",
	"faregate ledger prove":              "  faregate ledger prove --data data/run1 --event 0123456789abcdef0123456789abcdef --json",
	"faregate ledger deploy":             "  faregate ledger deploy --eth-rpc http://besu:8545 --admin-key admin.key --clearing-house 0xC1EA...",
	"faregate ledger admit":              "  faregate ledger admit --data data/run1 --operator tram\n  faregate ledger admit --eth-rpc http://besu:8545 --contract 0xC0FFEE... --eth-key admin.key --operator tram --account 0xA11CE...",
	"faregate ledger keygen":             "  faregate ledger keygen --out metro.key    # prints the account to admit (ledger admit --account) and to fund",
	"faregate ledger address":            "  faregate ledger address --eth-key metro.key",
	"faregate ledger register-terminals": "  faregate ledger register-terminals --data data/run1 --operator metro --registry registry.json\n  faregate ledger register-terminals --data data/run1 --operator metro --terminal t9 --stop S3 --public-key 0x... --key-proof 0x...",
	"faregate ledger revoke-terminal":    "  faregate ledger revoke-terminal --data data/run1 --operator metro --terminal t9",
	"faregate ledger acknowledge":        "  faregate ledger acknowledge --data data/run1 --operator metro --batch 3",
	"faregate ledger dispute":            "  faregate ledger dispute --data data/run1 --operator metro --batch 3 --reason dispute-3.pdf",

	"faregate fares": "  faregate fares quote --feed feed.zip < journey.json",
	"faregate fares quote": `  faregate fares quote --feed feed.zip <<'EOF'
  {"legs": [{"route_id": "line1", "network_id": "HSL", "from_stop": "A", "to_stop": "B",
             "start_time": "2022-03-30T02:00:00+02:00", "end_time": "2022-03-30T02:30:00+02:00"}],
   "rider_category": "adult"}
  EOF`,
	"faregate fares check": "  faregate fares check --feed ../shared/testdata/gtfs/nigiri-fares --cases ../shared/testdata/gtfs/nigiri-fares/cases.json",

	"faregate face":           "  faregate face detect photo.jpg\n  faregate face enroll --subject alice --consent-by alice --purpose \"face travel\" a1.jpg a2.jpg a3.jpg",
	"faregate face detect":    "  faregate face detect --models models photo.jpg",
	"faregate face enroll":    "  FAREGATE_GALLERY_KEY=... faregate face enroll --subject alice --consent-by alice --purpose \"face travel\" a1.jpg a2.jpg a3.jpg",
	"faregate face identify":  "  faregate face identify frame1.jpg frame2.jpg --frames 2",
	"faregate face verify":    "  faregate face verify --subject alice gate.jpg",
	"faregate face forget":    "  faregate face forget --subject alice",
	"faregate face eval":      "  faregate face eval --descriptors ../shared/testdata/faces/idols.json --policy policy.json",
	"faregate face calibrate": "  faregate face calibrate captures/ --out policy.json\n  faregate face calibrate --descriptors ../shared/testdata/faces/idols.json --target-fmr 0.001 --out policy.json",
}

// requiredFlags are flags without which a command cannot do anything
// meaningful, marked required here (cobra checks them before the command
// runs, and help says so) for commands whose own code only checked them
// inside RunE.
var requiredFlags = map[string][]string{
	"faregate clearing token issue":    {"name", "role"},
	"faregate clearing token revoke":   {"name"},
	"faregate clearing rider-id":       {"media", "token"},
	"faregate clearing deny add":       {"media", "token", "reason"},
	"faregate clearing deny remove":    {"media", "token"},
	"faregate clearing faces enrol":    {"subject"},
	"faregate clearing faces erase":    {"subject"},
	"faregate clearing faces show":     {"subject"},
	"faregate clearing feeds schedule": {"feed", "from"},
	"faregate clearing feeds withdraw": {"version"},
	"faregate face enroll":             {"subject", "consent-by", "purpose"},
	"faregate face verify":             {"subject"},
	"faregate face forget":             {"subject"},
	"faregate ledger acknowledge":      {"operator", "batch"},
	"faregate ledger dispute":          {"operator", "batch", "reason"},
	"faregate ledger revoke-terminal":  {"operator", "terminal"},
}

// requiredAnnotation is the flag annotation MarkFlagRequired sets.
const requiredAnnotation = cobra.BashCompOneRequiredFlag

// documentCommand gives c its Example from commandExamples, marks its
// required flags and says "(required)" in the help of each.
func documentCommand(c *cobra.Command) {
	path := c.CommandPath()
	if c.Example == "" {
		c.Example = commandExamples[path]
	}
	for _, name := range requiredFlags[path] {
		if err := c.MarkFlagRequired(name); err != nil {
			panic("requiredFlags[" + path + "]: " + err.Error()) // a typo in the table; TestExitCodes builds it
		}
	}
	c.Flags().VisitAll(func(f *pflag.Flag) {
		if len(f.Annotations[requiredAnnotation]) > 0 && !strings.Contains(f.Usage, "required") {
			f.Usage += " (required)"
		}
	})
}
