// promqlcheck parses PromQL expressions with Prometheus's own parser (the one promtool and the server use)
// and names the metrics each selects, so that Hearth's alert rules are checked as Prometheus reads them.
//
//	stdin:  {"exprs": ["...", ...]}
//	stdout: [{"error": "...", "metrics": ["...", ...]}, ...]
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

type checked struct {
	Error   string   `json:"error"`
	Metrics []string `json:"metrics"`
}

func check(expr string) checked {
	parsed, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		return checked{Error: err.Error(), Metrics: []string{}}
	}
	names := map[string]bool{}
	parser.Inspect(parsed, func(node parser.Node, _ []parser.Node) error {
		if selector, ok := node.(*parser.VectorSelector); ok {
			for _, matcher := range selector.LabelMatchers {
				if matcher.Name == labels.MetricName && matcher.Type == labels.MatchEqual {
					names[matcher.Value] = true
				}
			}
		}
		return nil
	})
	metrics := make([]string, 0, len(names))
	for name := range names {
		metrics = append(metrics, name)
	}
	sort.Strings(metrics)
	return checked{Metrics: metrics}
}

func main() {
	var input struct {
		Exprs []string `json:"exprs"`
	}
	if err := json.NewDecoder(os.Stdin).Decode(&input); err != nil {
		fmt.Fprintln(os.Stderr, "promqlcheck: reading the input:", err)
		os.Exit(2)
	}
	out := make([]checked, 0, len(input.Exprs))
	for _, expr := range input.Exprs {
		out = append(out, check(expr))
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		os.Exit(1)
	}
}
