// Validates Kubernetes objects with the models kubernetes-models generates
// from the upstream schemas: the Kubernetes OpenAPI definition (Deployment,
// Service), the Gateway API CRDs (HTTPRoute) and the Argo Rollouts CRDs
// (Rollout). Types, required fields, enums and ranges are checked (e.g. a
// backendRef weight above 1,000,000).
//
// Usage: node k8s_models.mjs FILE.json  (a list of objects)
// Prints one line per invalid object; exits 1 when there is any.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

// The packages export ESM only: their files are imported by path.
const nodeModules = process.env.GANTRY_NODE_MODULES;
const models = {
  "apps/v1 Deployment": ["kubernetes-models/apps/v1/Deployment", "Deployment"],
  "v1 Service": ["kubernetes-models/v1/Service", "Service"],
  "gateway.networking.k8s.io/v1 HTTPRoute": ["@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1/HTTPRoute", "HTTPRoute"],
  "argoproj.io/v1alpha1 Rollout": ["@kubernetes-models/argo-rollouts/argoproj.io/v1alpha1/Rollout", "Rollout"],
};

const objects = JSON.parse(readFileSync(process.argv[2], "utf8"));
let failed = 0;
for (const [index, object] of objects.entries()) {
  const key = `${object.apiVersion} ${object.kind}`;
  const model = models[key];
  if (!model) {
    console.log(`[${index}] ${key}: no model to check it against`);
    failed++;
    continue;
  }
  const module = await import(pathToFileURL(join(nodeModules, `${model[0]}.js`)).href);
  try {
    new module[model[1]](object).validate();
  } catch (error) {
    console.log(`[${index}] ${key} ${object.metadata?.name}: ${error.message}`);
    failed++;
  }
}
process.exit(failed ? 1 : 0);
