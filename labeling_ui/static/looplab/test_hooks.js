// The one object the browser tests and benchmarks read: window.__looplab, with one entry per page part:
//   state       the page's state object (annotation tools through tool_common.js, review, project)
//   image       the image tool's view helpers and synchronous draw (tools/image.js)
//   audio       the audio tool's wavesurfer instance and zoom/region helpers (tools/audio.js)
//   pointcloud  the point-cloud tool's three.js objects and selection helpers (tools/pointcloud.js)
//   drift, exports, labelCheck   the state of those panels on the project page
// Nothing in the application reads it.
export function expose(name, value) {
  if (!window.__looplab) window.__looplab = {};
  window.__looplab[name] = value;
}
