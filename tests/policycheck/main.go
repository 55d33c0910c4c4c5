// policycheck answers, for NetworkPolicies and a list of connections, whether each connection is allowed,
// as decided by cyclonus's policy engine (github.com/mattfenwick/cyclonus/pkg/matcher), the one
// Kubernetes' sig-network uses to compute NetworkPolicy truth tables. Hearth's tests feed it the shipped
// manifests (the local cluster's CNI does not enforce policies).
//
//	stdin:  {"policies": [NetworkPolicy, ...], "connections": [{"name": "...", "traffic": Traffic}, ...]}
//	stdout: [{"name": "...", "ingress": bool, "egress": bool, "allowed": bool}, ...]
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/mattfenwick/cyclonus/pkg/matcher"
	networkingv1 "k8s.io/api/networking/v1"
)

type connection struct {
	Name    string           `json:"name"`
	Traffic *matcher.Traffic `json:"traffic"`
}

type verdict struct {
	Name    string `json:"name"`
	Ingress bool   `json:"ingress"`
	Egress  bool   `json:"egress"`
	Allowed bool   `json:"allowed"`
}

func main() {
	var input struct {
		Policies    []*networkingv1.NetworkPolicy `json:"policies"`
		Connections []connection                  `json:"connections"`
	}
	if err := json.NewDecoder(os.Stdin).Decode(&input); err != nil {
		fmt.Fprintln(os.Stderr, "policycheck: reading the input:", err)
		os.Exit(2)
	}
	policy := matcher.BuildNetworkPolicies(false, input.Policies)
	verdicts := make([]verdict, 0, len(input.Connections))
	for _, c := range input.Connections {
		result := policy.IsTrafficAllowed(c.Traffic)
		verdicts = append(verdicts, verdict{c.Name, result.Ingress.IsAllowed(), result.Egress.IsAllowed(), result.IsAllowed()})
	}
	if err := json.NewEncoder(os.Stdout).Encode(verdicts); err != nil {
		fmt.Fprintln(os.Stderr, "policycheck: writing the answer:", err)
		os.Exit(1)
	}
}
