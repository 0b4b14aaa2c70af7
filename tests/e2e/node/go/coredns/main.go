// Command coredns is CoreDNS with only the plugins a test cluster's DNS needs (the kubernetes
// zone, health and readiness, cache, reload, error and query logs). Building
// the stock command would compile every plugin, cloud DNS providers included; this keeps the
// e2e node's build short. There is no forward plugin: names outside the cluster are refused,
// so no query ever leaves the machine.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
)

func init() {
	// The order in which the plugins handle a query (a subset of CoreDNS's own order).
	dnsserver.Directives = []string{
		"reload", "health", "ready", "errors", "log", "loadbalance", "cache", "kubernetes",
	}
}

func main() { coremain.Run() }
