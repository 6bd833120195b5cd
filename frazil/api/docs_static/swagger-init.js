// Starts Swagger UI on /docs. A file, not an inline script: the page's CSP runs only
// same-origin scripts.
window.addEventListener("DOMContentLoaded", function () {
  window.ui = SwaggerUIBundle({
    url: document.body.dataset.openapiUrl,
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    deepLinking: true,
    showExtensions: true,
    showCommonExtensions: true,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
    // No validator badge: it would send the document to validator.swagger.io.
    validatorUrl: null,
  });
});
