// 引入 npm 开源库
const log4js = require('log4js');

// 引入数据库操作模型
const User = require('../models/user');

// 日志打印
const logger = log4js.getLogger();

exports.main = async function () {
  const allUsers = await User.findMany();
  logger.debug('User.allUsers = ', allUsers);
  return allUsers;
};
