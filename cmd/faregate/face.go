package main

import "github.com/spf13/cobra"

// newFaceCmd is replaced by the biometrics work (issue 3).
func newFaceCmd() *cobra.Command {
	return &cobra.Command{Use: "face", Short: "Face detection, enrolment and matching"}
}
