// The seed's smallest cloud function.
exports.main = () => 'HelloWorld';
