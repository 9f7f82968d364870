#!/usr/bin/env node
// validate.cjs — checks deploy/k8s against the Kubernetes OpenAPI schemas, strictly.
//
// Every object of a kustomization (rendered by `kubectl kustomize` when kubectl is on
// PATH, else by the small renderer below, which knows what deploy/k8s uses: resources,
// components, strategic-merge patches, namespace, images) is checked against the JSON
// schema Kubernetes publishes for its apiVersion/kind. The schemas are those compiled
// into the npm package kubernetes-models 4.5.1, generated from the Kubernetes 1.33
// OpenAPI document (pinned in package.json and package-lock.json beside this file).
// Those compiled schemas check types, required fields, enums and formats but, as the
// API server does, ignore fields they do not define; kubectl (and kubeconform -strict)
// reject them, and so does this script: every object is validated through a Proxy that
// records which keys the schema looked at, and any key of the manifest the schema never
// read is reported as an unknown field. Maps (labels, ConfigMap data, …) are walked by
// the schema, so their keys count as read.
//
// Each kustomization.yaml (and kind: Component) met on the way is checked too, against
// a schema of kustomize's Kustomization type written here (its field names and types,
// kustomize v5), with unknown fields rejected.
//
// Usage: NODE_PATH=<dir>/node_modules node validate.cjs [--no-kubectl] [--dump FILE] TARGET...
//   TARGET   a directory holding kustomization.yaml, or a YAML file of manifests
//   --dump   also write {target: [objects…]} as JSON to FILE (the rendered objects)
// deploy/k8s/tools/validate.sh installs the packages and runs this on deploy/k8s.
// Exit status 0 when every object is valid, 1 otherwise, 2 on a usage error.
"use strict";

const fs = require("fs");
const path = require("path");
const { execFileSync } = require("child_process");
const yaml = require("js-yaml");

const SCHEMA_SOURCE = "Kubernetes 1.33 OpenAPI schemas (npm kubernetes-models 4.5.1), strict";

// ---- loading YAML -------------------------------------------------------------------

// Every non-empty document of a YAML stream.
function loadDocs(text, where) {
    try {
        return yaml.loadAll(text).filter((d) => d !== null && d !== undefined);
    } catch (e) {
        throw new Error(`${where}: not YAML: ${e.message}`);
    }
}

function kustomizationFile(dir) {
    for (const name of ["kustomization.yaml", "kustomization.yml", "Kustomization"]) {
        const p = path.join(dir, name);
        if (fs.existsSync(p)) return p;
    }
    return null;
}

// ---- the Kustomization schema -------------------------------------------------------

const strList = { type: "array", items: { type: "string" } };
const strMap = { type: "object", additionalProperties: { type: "string" } };
const target = {
    type: "object", additionalProperties: false,
    properties: {
        group: { type: "string" }, version: { type: "string" }, kind: { type: "string" },
        name: { type: "string" }, namespace: { type: "string" },
        labelSelector: { type: "string" }, annotationSelector: { type: "string" },
    },
};
const generator = {
    type: "object", additionalProperties: false,
    properties: {
        name: { type: "string" }, namespace: { type: "string" }, behavior: { enum: ["create", "replace", "merge"] },
        files: strList, literals: strList, envs: strList, env: { type: "string" }, type: { type: "string" },
        options: { type: "object" },
    },
};
const KUSTOMIZATION_SCHEMA = {
    type: "object", additionalProperties: false, required: ["apiVersion", "kind"],
    properties: {
        apiVersion: { enum: ["kustomize.config.k8s.io/v1beta1", "kustomize.config.k8s.io/v1alpha1"] },
        kind: { enum: ["Kustomization", "Component"] },
        metadata: { type: "object" },
        resources: strList, components: strList, crds: strList, bases: strList,
        namespace: { type: "string" }, namePrefix: { type: "string" }, nameSuffix: { type: "string" },
        commonLabels: strMap, commonAnnotations: strMap,
        labels: {
            type: "array",
            items: {
                type: "object", additionalProperties: false,
                properties: {
                    pairs: strMap, includeSelectors: { type: "boolean" }, includeTemplates: { type: "boolean" },
                    fields: { type: "array" },
                },
            },
        },
        images: {
            type: "array",
            items: {
                type: "object", additionalProperties: false, required: ["name"],
                properties: {
                    name: { type: "string" }, newName: { type: "string" }, newTag: { type: "string" },
                    digest: { type: "string" }, tagSuffix: { type: "string" },
                },
            },
        },
        replicas: {
            type: "array",
            items: {
                type: "object", additionalProperties: false, required: ["name", "count"],
                properties: { name: { type: "string" }, count: { type: "integer", minimum: 0 } },
            },
        },
        patches: {
            type: "array",
            items: {
                type: "object", additionalProperties: false,
                properties: {
                    path: { type: "string" }, patch: { type: "string" }, target,
                    options: { type: "object", additionalProperties: { type: "boolean" } },
                },
            },
        },
        patchesStrategicMerge: strList, patchesJson6902: { type: "array" },
        configMapGenerator: { type: "array", items: generator },
        secretGenerator: { type: "array", items: generator },
        generatorOptions: { type: "object" },
        replacements: { type: "array" }, vars: { type: "array" },
        configurations: strList, generators: strList, transformers: strList, validators: strList,
        openapi: { type: "object" }, sortOptions: { type: "object" }, buildMetadata: strList,
        helmCharts: { type: "array" }, helmGlobals: { type: "object" },
    },
};

let kustomizationValidator = null;

// Errors of kustomization file `file` against KUSTOMIZATION_SCHEMA (ajv, every error).
function checkKustomization(doc, file) {
    if (!kustomizationValidator) {
        const Ajv = require("ajv");
        kustomizationValidator = new Ajv({ allErrors: true, strict: true }).compile(KUSTOMIZATION_SCHEMA);
    }
    if (kustomizationValidator(doc)) return [];
    return kustomizationValidator.errors.map((e) => {
        const extra = e.params && e.params.additionalProperty ? ` (${e.params.additionalProperty})` : "";
        return `${file}: ${e.instancePath || "/"} ${e.message}${extra}`;
    });
}

// ---- a renderer for when kubectl is not installed --------------------------------------

// The key that identifies an item of a list of objects in a strategic merge patch.
function mergeKey(items) {
    for (const key of ["name", "mountPath", "containerPort", "ip"]) {
        if (items.every((i) => i && typeof i === "object" && key in i)) return key;
    }
    return null;
}

// Strategic merge of `patch` into `base` (returns the result; neither is changed):
// maps merge, null deletes, lists of objects merge by their key, other lists replace.
function strategicMerge(base, patch) {
    if (Array.isArray(patch)) {
        const key = Array.isArray(base) && base.length ? mergeKey(base.concat(patch)) : null;
        if (!key) return patch.filter((i) => !(i && i.$patch === "delete"));
        const out = base.map((i) => structuredClone(i));
        const added = []; // new items go first, as kustomize puts them
        for (const item of patch) {
            const at = out.findIndex((o) => o[key] === item[key]);
            if (item.$patch === "delete") {
                if (at >= 0) out.splice(at, 1);
            } else if (at >= 0) {
                out[at] = strategicMerge(out[at], item);
            } else {
                added.push(item);
            }
        }
        return added.concat(out);
    }
    if (patch && typeof patch === "object") {
        const out = base && typeof base === "object" && !Array.isArray(base) ? structuredClone(base) : {};
        for (const [k, v] of Object.entries(patch)) {
            if (v === null) delete out[k];
            else out[k] = strategicMerge(out[k], v);
        }
        return out;
    }
    return patch;
}

// Applies the patches of kustomization `k` (in `dir`) to `objects`, in place.
function applyPatches(objects, k, dir) {
    for (const p of k.patches || []) {
        const docs = p.path ? loadDocs(fs.readFileSync(path.join(dir, p.path), "utf8"), p.path)
            : loadDocs(p.patch || "", "inline patch");
        for (const patch of docs) {
            if (Array.isArray(patch)) throw new Error(`${dir}: JSON 6902 patches need kubectl kustomize`);
            const kind = (p.target && p.target.kind) || patch.kind;
            const name = (p.target && p.target.name) || (patch.metadata && patch.metadata.name);
            const at = objects.findIndex((o) => o.kind === kind && o.metadata && o.metadata.name === name);
            if (at < 0) throw new Error(`${dir}: patch ${p.path || "inline"} matches no ${kind}/${name}`);
            if (patch.$patch === "delete") objects.splice(at, 1);
            else objects[at] = strategicMerge(objects[at], patch);
        }
    }
}

const CLUSTER_SCOPED = new Set(["Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume",
    "StorageClass", "PriorityClass", "CustomResourceDefinition"]);

// Renders the kustomization in `dir`; `problems` collects the kustomization files' errors.
function renderDir(dir, problems) {
    const file = kustomizationFile(dir);
    if (!file) throw new Error(`${dir}: no kustomization.yaml`);
    const k = loadDocs(fs.readFileSync(file, "utf8"), file)[0] || {};
    problems.push(...checkKustomization(k, file));
    let objects = [];
    for (const r of k.resources || []) {
        const p = path.join(dir, r);
        if (fs.statSync(p).isDirectory()) objects.push(...renderDir(p, problems));
        else objects.push(...loadDocs(fs.readFileSync(p, "utf8"), p));
    }
    for (const c of k.components || []) {
        const cdir = path.join(dir, c);
        const cfile = kustomizationFile(cdir);
        const comp = loadDocs(fs.readFileSync(cfile, "utf8"), cfile)[0] || {};
        problems.push(...checkKustomization(comp, cfile));
        if (comp.kind !== "Component") problems.push(`${cfile}: kind must be Component`);
        for (const r of comp.resources || []) objects.push(...loadDocs(fs.readFileSync(path.join(cdir, r), "utf8"), r));
        applyPatches(objects, comp, cdir);
    }
    applyPatches(objects, k, dir);
    for (const l of k.labels || []) {
        for (const o of objects) {
            o.metadata = { ...o.metadata, labels: { ...(o.metadata && o.metadata.labels), ...l.pairs } };
            const tmpl = o.spec && o.spec.template;
            if (l.includeTemplates && tmpl) tmpl.metadata = { ...tmpl.metadata, labels: { ...(tmpl.metadata && tmpl.metadata.labels), ...l.pairs } };
            if (l.includeSelectors) throw new Error(`${dir}: labels with includeSelectors need kubectl kustomize`);
        }
    }
    if (k.namespace) {
        for (const o of objects) {
            if (!CLUSTER_SCOPED.has(o.kind)) o.metadata = { ...o.metadata, namespace: k.namespace };
        }
    }
    for (const img of k.images || []) {
        for (const o of objects) {
            const spec = o.spec && o.spec.template && o.spec.template.spec;
            for (const c of spec ? [...(spec.containers || []), ...(spec.initContainers || [])] : []) {
                const [name, tag] = c.image.split(":");
                if (name !== img.name) continue;
                c.image = `${img.newName || name}:${img.newTag || tag || "latest"}`;
            }
        }
    }
    return objects;
}

// Checks every kustomization file under `dir` (what kubectl does not show us), and
// renders with kubectl kustomize when it is there.
function checkTree(dir, problems) {
    const file = kustomizationFile(dir);
    const k = loadDocs(fs.readFileSync(file, "utf8"), file)[0] || {};
    problems.push(...checkKustomization(k, file));
    for (const r of [...(k.resources || []), ...(k.components || [])]) {
        const p = path.join(dir, r);
        if (fs.existsSync(p) && fs.statSync(p).isDirectory()) checkTree(p, problems);
    }
}

function hasKubectl() {
    try {
        execFileSync("kubectl", ["version", "--client"], { stdio: "ignore", timeout: 30000 });
        return true;
    } catch (e) {
        return false;
    }
}

// ---- strict validation --------------------------------------------------------------

// The compiled schema validator of apiVersion/kind, or null when the pinned Kubernetes
// version has none.
function validatorFor(apiVersion, kind) {
    if (typeof apiVersion !== "string" || typeof kind !== "string" || !/^[A-Za-z0-9]+$/.test(kind)) return null;
    let mod;
    try {
        mod = require(`kubernetes-models/${apiVersion}/${kind}`);
    } catch (e) {
        return null;
    }
    const schemaName = Object.keys(mod).find((k) => k.startsWith("IoK8s"));
    if (!schemaName) return null;
    // The package exports no _schemas/ path: load the file from the package's directory.
    const pkgDir = path.dirname(require.resolve("kubernetes-models"));
    return require(path.join(pkgDir, "_schemas", `${schemaName}.js`)).validate;
}

// A Proxy of `value` that records in `seen` (target → Set of keys) what is read.
function tracked(value, seen) {
    if (value === null || typeof value !== "object") return value;
    if (!seen.has(value)) seen.set(value, new Set());
    const keys = seen.get(value);
    return new Proxy(value, {
        get(t, key, receiver) {
            if (typeof key === "string" && Object.prototype.hasOwnProperty.call(t, key)) keys.add(key);
            return tracked(Reflect.get(t, key, receiver), seen);
        },
        has(t, key) {
            if (typeof key === "string") keys.add(key);
            return Reflect.has(t, key);
        },
        ownKeys(t) {
            for (const k of Object.keys(t)) keys.add(k);
            return Reflect.ownKeys(t);
        },
    });
}

// Paths of the keys of `value` the schema never read.
function unknownFields(value, seen, at, out) {
    if (value === null || typeof value !== "object") return out;
    if (Array.isArray(value)) {
        value.forEach((v, i) => unknownFields(v, seen, `${at}/${i}`, out));
        return out;
    }
    const read = seen.get(value) || new Set();
    for (const [k, v] of Object.entries(value)) {
        if (!read.has(k)) out.push(`${at}/${k}`);
        else unknownFields(v, seen, `${at}/${k}`, out);
    }
    return out;
}

// Errors of one object ("" prefix lines), none when it is valid.
function validateObject(obj) {
    if (!obj || typeof obj !== "object" || Array.isArray(obj)) return ["not an object"];
    const validate = validatorFor(obj.apiVersion, obj.kind);
    if (!validate) return [`no schema for apiVersion ${obj.apiVersion} kind ${obj.kind} in the pinned Kubernetes version`];
    const seen = new WeakMap();
    const errors = [];
    if (!validate(tracked(obj, seen))) {
        for (const e of validate.errors) {
            errors.push(`${e.instancePath || "/"}: ${e.message || e.keyword}${e.params ? " " + JSON.stringify(e.params) : ""}`);
        }
    }
    for (const p of unknownFields(obj, seen, "", [])) errors.push(`${p}: unknown field`);
    if (!obj.metadata || typeof obj.metadata.name !== "string" || !obj.metadata.name) {
        errors.push("/metadata/name: required");
    }
    return errors;
}

// ---- main ---------------------------------------------------------------------------

function main(argv) {
    let useKubectl = true;
    let dump = null;
    const targets = [];
    for (let i = 0; i < argv.length; i++) {
        if (argv[i] === "--no-kubectl") useKubectl = false;
        else if (argv[i] === "--dump") dump = argv[++i];
        else if (argv[i].startsWith("-")) {
            console.error(`validate.cjs: unknown option ${argv[i]}`);
            return 2;
        } else targets.push(argv[i]);
    }
    if (!targets.length || (dump === undefined)) {
        console.error("usage: validate.cjs [--no-kubectl] [--dump FILE] TARGET...");
        return 2;
    }
    const kubectl = useKubectl && hasKubectl();
    const rendered = {};
    let objects = 0;
    let failures = 0;
    for (const t of targets) {
        const problems = [];
        let list;
        try {
            if (fs.statSync(t).isDirectory()) {
                if (kubectl) {
                    checkTree(t, problems);
                    const out = execFileSync("kubectl", ["kustomize", t], { encoding: "utf8", timeout: 60000,
                        stdio: ["ignore", "pipe", "pipe"] });
                    list = loadDocs(out, t);
                } else {
                    list = renderDir(t, problems);
                }
            } else {
                list = loadDocs(fs.readFileSync(t, "utf8"), t);
            }
        } catch (e) {
            console.log(`FAIL ${t}: ${(e.stderr || e.message).toString().trim()}`);
            failures++;
            continue;
        }
        const how = fs.statSync(t).isDirectory() ? (kubectl ? "kubectl kustomize" : "built-in renderer") : "file";
        console.log(`== ${t} (${list.length} objects, ${how})`);
        for (const p of problems) {
            console.log(`FAIL ${p}`);
            failures++;
        }
        rendered[t] = list;
        for (const obj of list) {
            objects++;
            const name = obj && obj.metadata ? `${obj.metadata.namespace ? obj.metadata.namespace + "/" : ""}${obj.metadata.name}` : "?";
            const label = `${obj && obj.apiVersion} ${obj && obj.kind} ${name}`;
            const errors = validateObject(obj);
            if (errors.length) {
                failures++;
                console.log(`FAIL ${label}`);
                for (const e of errors) console.log(`     ${e}`);
            } else {
                console.log(`ok   ${label}`);
            }
        }
    }
    if (dump) fs.writeFileSync(dump, JSON.stringify(rendered, null, 1));
    console.log(`k8s-validate: ${objects} objects, ${failures} failed (${SCHEMA_SOURCE})`);
    return failures ? 1 : 0;
}

process.exitCode = main(process.argv.slice(2));
