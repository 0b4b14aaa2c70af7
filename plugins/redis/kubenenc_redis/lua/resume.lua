-- resume.lua: Coordination.resume (see lib_resume.lua).
return reply(resume_paused(ARGV, false))
