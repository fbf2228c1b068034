local function main(parent: string)
  local tenant = ctx.get("tenant")
  process.send(parent, "ctx", tenant)
  return 0
end
return {main = main}
