// A tiny model so the seed's example runs as written.
const USERS = [
  { id: 1, name: 'Ada' },
  { id: 2, name: 'Grace' },
];

exports.findMany = async () => USERS.map((u) => ({ ...u }));
