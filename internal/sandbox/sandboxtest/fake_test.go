package sandboxtest_test

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/thon-dev/thon/internal/sandbox"
	"github.com/thon-dev/thon/internal/sandbox/sandboxtest"
)

// The fake passes the suite every engine passes, with Docker's capabilities
// and with Kubernetes' (which measures CPU as a rate, like its metrics API).
func TestFakeConformance(t *testing.T) {
	for name, caps := range map[string]sandbox.Capabilities{
		"Docker":     sandboxtest.DockerCapabilities,
		"Kubernetes": sandboxtest.KubernetesCapabilities,
	} {
		cpuRate := name == "Kubernetes"
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			engine := sandboxtest.NewEngine()
			t.Cleanup(engine.Close)
			instance := sandboxtest.PerTest(func(t *testing.T) string { return fmt.Sprintf("i%d", seq.Add(1)) })
			sandboxtest.Conformance(t, func(t *testing.T) sandbox.Runtime {
				return engine.Runtime(sandboxtest.FakeOptions{Instance: instance(t), Capabilities: &caps, CPURate: cpuRate})
			}, sandboxtest.WorkspaceID(func(t *testing.T, rt sandbox.Runtime, user string) string {
				return rt.(*sandboxtest.Fake).WorkspaceID(user)
			}))
		})
	}
}

var seq atomic.Int64
