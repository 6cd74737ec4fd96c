// The viewer's controls: one per command of GET /schema (slider, dropdown, checkbox, text box or
// button from each argument's JSON Schema), each showing the reply to what it sent.
// A control shows a value as the model's only when the engine reports it (`sync` with the
// `command_state` of /schema or of the session's stats, or the `data` of a {"type": "state"} message:
// {COMMAND: {PARAMETER: value}});
// until then it shows no value as current (an indeterminate box, an empty choice, "–") and the
// parameter's default only as a hint ("default: 1"). A text box shows the current value as its
// placeholder, so what the user types replaces it. Protocol: docs/protocol.md.
"use strict";

(() => {
  function unwrap(schema) {
    // Optional[X] is {"anyOf": [X, {"type": "null"}], "default": ...}: use X, keep the outer default.
    if (schema.anyOf) {
      const inner = schema.anyOf.find((s) => s.type !== "null") || {};
      return { ...inner, ...schema, anyOf: undefined };
    }
    return schema;
  }

  const shown = (value) => (typeof value === "string" ? value : JSON.stringify(value));

  // One parameter's input. `field.set(value)` shows the model's current value, `field.unknown()` none;
  // `field.read()` is what a send carries (undefined: left out, so the server applies its default).
  function makeField(key, rawSchema, required) {
    const schema = unwrap(rawSchema);
    const label = document.createElement("label");
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = schema.title || key;
    if (schema.description) label.title = schema.description;
    label.append(name);
    const hint = document.createElement("span");
    hint.className = "hint";
    hint.textContent = schema.default !== undefined ? "default: " + shown(schema.default) : required ? "required" : "";
    const field = { key, label, kind: null, input: null, required, known: false, chosen: false };
    let input;
    const choices = schema.enum || (schema.const !== undefined ? [schema.const] : null);
    if (choices) {
      field.kind = "select";
      input = document.createElement("select");
      const none = document.createElement("option"); // shown while no value is current
      none.value = "";
      none.textContent = "–";
      none.disabled = true;
      input.append(none);
      for (const choice of choices) {
        const option = document.createElement("option");
        option.value = JSON.stringify(choice);
        option.textContent = String(choice);
        input.append(option);
      }
      field.show = (value) => { input.value = value === undefined ? "" : JSON.stringify(value); };
      field.read = () => (input.value === "" ? undefined : JSON.parse(input.value));
    } else if (schema.type === "boolean") {
      field.kind = "checkbox";
      input = document.createElement("input");
      input.type = "checkbox";
      field.show = (value) => {
        input.indeterminate = value === undefined;
        input.checked = value === true;
      };
      field.read = () => (input.indeterminate ? undefined : input.checked);
    } else if (schema.type === "number" || schema.type === "integer") {
      const min = schema.minimum ?? schema.exclusiveMinimum;
      const max = schema.maximum ?? schema.exclusiveMaximum;
      const integer = schema.type === "integer";
      const format = (v) => Number(v).toFixed(integer ? 0 : 2);
      input = document.createElement("input");
      input.step = integer ? "1" : "any";
      if (min !== undefined && max !== undefined) {
        field.kind = "slider";
        input.type = "range";
        input.min = String(min);
        input.max = String(max);
        const out = document.createElement("output");
        input.addEventListener("input", () => { out.textContent = format(input.value); });
        field.show = (value) => {
          // No current value: the thumb rests at the default (or the minimum), marked as not the model's.
          input.value = String(value === undefined ? schema.default ?? min : value);
          out.textContent = value === undefined ? "–" : format(value); // the true value, even out of range
        };
        field.extra = out;
      } else {
        field.kind = "number";
        input.type = "number";
        if (min !== undefined) input.min = String(min);
        if (max !== undefined) input.max = String(max);
        field.show = (value) => { input.value = value === undefined || value === null ? "" : String(value); };
      }
      field.read = () => {
        if (input.value === "" || (field.kind === "slider" && !field.known && !field.chosen)) return undefined;
        return integer ? Math.round(Number(input.value)) : Number(input.value);
      };
    } else {
      field.kind = "text";
      input = document.createElement("input");
      input.type = "text";
      if (schema.maxLength) input.maxLength = schema.maxLength * 4; // the server says when it is too long
      // The box stays free for what the user types next; the current value shows as its placeholder.
      const blank = schema.description || schema.type || "value";
      field.show = (value) => { input.placeholder = value === undefined || value === null ? blank : String(value); };
      field.read = () => (input.value === "" && !field.chosen ? undefined : input.value);
    }
    input.name = key;
    field.input = input;
    label.append(input);
    if (field.extra) label.append(field.extra);
    label.append(hint);
    // The user's own choice counts as a value to send, though not as the model's until it is reported.
    const choose = () => {
      field.chosen = true;
      label.classList.remove("unknown");
    };
    input.addEventListener("input", choose);
    input.addEventListener("change", choose);
    let dragging = false;
    input.addEventListener("pointerdown", () => { dragging = true; });
    input.addEventListener("pointerup", () => { dragging = false; });
    // Typing or dragging is not interrupted by a report; the report that follows the send shows it.
    field.busy = () => dragging || (field.kind === "number" && document.activeElement === input);
    field.set = (value) => {
      field.known = true;
      label.classList.remove("unknown");
      label.dataset.current = "known";
      if (!field.busy()) field.show(value);
    };
    // No current value: a value the model reported before is no longer shown as its value; what the
    // user has chosen and not yet sent stays.
    field.unknown = (initial) => {
      label.dataset.current = "unknown";
      if (!field.known && !initial) return;
      field.known = false;
      field.chosen = false;
      label.classList.add("unknown");
      if (!field.busy()) field.show(undefined);
    };
    field.unknown(true);
    return field;
  }

  // Builds the form; returns {sync(state)}: `state` is {COMMAND: {PARAMETER: value}} (null: nothing known).
  function build(form, commands, request, log) {
    form.textContent = "";
    const all = new Map(); // command -> its fields
    for (const [name, schema] of Object.entries(commands)) {
      const set = document.createElement("fieldset");
      set.dataset.command = name;
      const legend = document.createElement("legend");
      legend.textContent = name;
      set.append(legend);
      if (schema.description) {
        const p = document.createElement("p");
        p.className = "description";
        p.textContent = schema.description;
        set.append(p);
      }
      const required = new Set(schema.required || []);
      const fields = Object.entries(schema.properties || {}).map(([key, s]) => makeField(key, s, required.has(key)));
      all.set(name, fields);
      const result = document.createElement("div");
      result.className = "result";
      let sends = 0;
      const sendIt = async () => {
        const data = {};
        for (const field of fields) {
          const value = field.read();
          if (value !== undefined) data[field.key] = value;
        }
        result.className = "result";
        result.textContent = "sending…";
        const sentAt = ++sends;
        const show = (reply) => {
          if (sentAt !== sends) return; // a newer send owns the result line
          if (reply.ok) {
            result.className = "result ok";
            // `sent`: delivered on the WebRTC data channel, whose v0 commands have no reply; a result
            // that comes later (`later`) replaces it.
            const word = reply.sent ? "sent" : "ok";
            result.textContent = reply.result === null || reply.result === undefined ? word : word + ": " + JSON.stringify(reply.result);
            if (reply.later) reply.later.then(show);
          } else {
            result.className = "result error";
            result.textContent = reply.error.code + ": " + reply.error.message;
            log(name + " failed: " + reply.error.message, true);
          }
        };
        show(await request({ type: name, data }));
      };
      for (const field of fields) set.append(field.label);
      const immediate = fields.length === 1 && fields[0].kind !== "text" && fields[0].kind !== "number";
      if (immediate) {
        fields[0].input.addEventListener("change", sendIt);
      } else {
        const button = document.createElement("button");
        button.type = "button";
        button.textContent = fields.length ? "Send" : name;
        button.addEventListener("click", sendIt);
        set.append(button);
        for (const field of fields) {
          if (field.kind === "text" || field.kind === "number") {
            field.input.addEventListener("keydown", (event) => {
              if (event.key === "Enter") { event.preventDefault(); sendIt(); }
            });
          }
        }
      }
      set.append(result);
      form.append(set);
    }
    if (!Object.keys(commands).length) form.textContent = "This model takes no commands.";

    function sync(state) {
      for (const [name, fields] of all) {
        const values = (state && state[name]) || {};
        for (const field of fields) {
          if (Object.prototype.hasOwnProperty.call(values, field.key)) field.set(values[field.key]);
          else field.unknown(false);
        }
      }
    }
    return { sync };
  }
  window.ReactorControls = { build };
})();
