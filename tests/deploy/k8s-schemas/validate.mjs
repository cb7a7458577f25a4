// Checks Kubernetes manifests: every document against its API's schema (kubernetes-models,
// generated from the Kubernetes OpenAPI; Prometheus Operator kinds from its CRDs), and every
// pod template against the "restricted" Pod Security Standard plus this project's rules
// (read-only root file system, pinned image tags). Prints one line per problem; exits 1 if any.
//   node tests/deploy/k8s-schemas/validate.mjs deploy/k8s/*.yaml
import fs from "node:fs";
import yaml from "js-yaml";

const problems = [];

async function modelFor(apiVersion, kind) {
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["", apiVersion];
  const path = group === "monitoring.coreos.com"
    ? `@kubernetes-models/prometheus-operator/${group}/${version}`
    : `kubernetes-models/${group ? group + "/" : ""}${version}`;
  const module = await import(path);
  if (!module[kind]) throw new Error(`${path} has no ${kind}`);
  return module[kind];
}

// Pod Security Standards, "restricted" profile (v1.30), for one pod spec.
function checkRestricted(where, pod) {
  const fail = (rule) => problems.push(`${where}: restricted PSS: ${rule}`);
  for (const key of ["hostNetwork", "hostPID", "hostIPC"]) {
    if (pod[key]) fail(`${key} must not be set`);
  }
  const allowedVolumes = ["configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                          "persistentVolumeClaim", "projected", "secret", "name"];
  for (const volume of pod.volumes ?? []) {
    for (const key of Object.keys(volume)) {
      if (!allowedVolumes.includes(key)) fail(`volume ${volume.name} uses ${key}`);
    }
  }
  const podContext = pod.securityContext ?? {};
  const podSeccomp = podContext.seccompProfile?.type;
  for (const container of [...(pod.initContainers ?? []), ...pod.containers]) {
    const c = container.securityContext ?? {};
    const name = `container ${container.name}`;
    if (c.privileged) fail(`${name} is privileged`);
    if (c.allowPrivilegeEscalation !== false) fail(`${name}: allowPrivilegeEscalation must be false`);
    const drops = c.capabilities?.drop ?? [];
    if (!drops.includes("ALL")) fail(`${name}: capabilities must drop ALL`);
    for (const added of c.capabilities?.add ?? []) {
      if (added !== "NET_BIND_SERVICE") fail(`${name}: adds capability ${added}`);
    }
    const nonRoot = c.runAsNonRoot ?? podContext.runAsNonRoot;
    if (nonRoot !== true) fail(`${name}: runAsNonRoot must be true`);
    if ((c.runAsUser ?? podContext.runAsUser) === 0) fail(`${name}: runs as uid 0`);
    const seccomp = c.seccompProfile?.type ?? podSeccomp;
    if (!["RuntimeDefault", "Localhost"].includes(seccomp)) {
      fail(`${name}: seccompProfile must be RuntimeDefault or Localhost`);
    }
    for (const port of container.ports ?? []) {
      if (port.hostPort) fail(`${name}: hostPort ${port.hostPort}`);
    }
    // This project's rules on top.
    if (c.readOnlyRootFilesystem !== true) problems.push(`${where}: ${name}: readOnlyRootFilesystem must be true`);
    const tag = container.image.includes(":") ? container.image.split(":").pop() : "";
    if (!tag || tag === "latest" || tag.endsWith("-latest")) {
      problems.push(`${where}: ${name}: image ${container.image} is not pinned to a version`);
    }
  }
}

for (const file of process.argv.slice(2)) {
  const docs = yaml.loadAll(fs.readFileSync(file, "utf8")).filter((d) => d);
  for (const doc of docs) {
    const where = `${file}: ${doc.kind}/${doc.metadata?.name}`;
    let Model;
    try {
      Model = await modelFor(doc.apiVersion, doc.kind);
    } catch (e) {
      problems.push(`${where}: no schema for ${doc.apiVersion} ${doc.kind}`);
      continue;
    }
    try {
      new Model(doc).validate();
    } catch (e) {
      problems.push(`${where}: schema: ${e.message}`);
    }
    const pod = doc.kind === "Pod" ? doc.spec : doc.spec?.template?.spec;
    if (pod) checkRestricted(where, pod);
  }
  console.log(`${file}: ${docs.length} documents checked`);
}
for (const problem of problems) console.log(problem);
process.exit(problems.length === 0 ? 0 : 1);
